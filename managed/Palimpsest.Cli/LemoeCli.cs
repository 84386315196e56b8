using Palimpsest.Editing;

namespace Palimpsest.Cli;

/// <summary>LEMoE's hyper-parameters from --hparams (laid over the defaults) and --layers (one layer).</summary>
internal static class LemoeCli
{
    public static LemoeHparams Hparams(string? file, int[]? layers, int modelLayers)
    {
        LemoeHparams hp;
        try { hp = LemoeHparams.FromJson(EditMethod.Merge(new LemoeHparams().ToJson(), file), EditMethod.Where(file)); }
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
