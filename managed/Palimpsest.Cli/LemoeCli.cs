using System.Text.Json.Nodes;
using Palimpsest.Editing;

namespace Palimpsest.Cli;

/// <summary>LEMoE's hyper-parameters from --hparams (laid over the defaults) and --layers (one layer).</summary>
internal static class LemoeCli
{
    public static LemoeHparams Hparams(string? file, int[]? layers, int modelLayers)
    {
        string json = "{}";
        if (file is not null)
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"hparams file '{file}' not found", file);
            json = File.ReadAllText(file);
            try { if (JsonNode.Parse(json) is not JsonObject) throw new CliUsageException($"hparams file '{file}': expected a JSON object"); }
            catch (System.Text.Json.JsonException e) { throw new CliUsageException($"hparams file '{file}': malformed JSON ({e.Message.Split('\n')[0]})"); }
        }
        LemoeHparams hp;
        try { hp = LemoeHparams.FromJson(json, file is null ? "default hparams" : $"hparams file '{file}'"); }
        catch (ArgumentException e) { throw new CliUsageException(e.Message); }
        if (layers is not null)
        {
            if (layers.Length != 1) throw new CliUsageException($"--layers: LEMoE adapts one layer ({layers.Length} given)");
            hp = hp with { Layer = layers[0] };
        }
        if (hp.Layer < 0 || hp.Layer >= modelLayers) throw new CliUsageException($"layer {hp.Layer} is outside the model's layers 0..{modelLayers - 1}");
        return hp;
    }
}
