using Palimpsest.Backends;
using Palimpsest.Editing.Data;
using Palimpsest.Journal;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Cli;

/// <summary>
/// A model loaded for the analysis and editing commands (trace, stats, edit, eval, lifelong,
/// bench-edits): the backend of the chosen device (<see cref="DeviceChoice"/>; the float32 SIMD CPU
/// backend by default), the weights, a Transformer over them and the tokenizer. Owns all of them.
/// </summary>
internal sealed class LoadedModel : IDisposable
{
    private LoadedModel(string folder, IBackend backend, Model model, ITextTokenizer tok)
    {
        Folder = folder; Backend = backend; Model = model; Tok = tok; Tf = new Transformer(model);
    }

    public string Folder { get; }
    public IBackend Backend { get; }
    public Model Model { get; }
    public Transformer Tf { get; }
    public ITextTokenizer Tok { get; }
    public ModelConfig Config => Model.Config;

    /// <summary>Validates the folder and tokenizer first (cheap, one-line errors), then loads the weights.</summary>
    public static LoadedModel Open(string folder, DeviceChoice? device = null)
    {
        ITextTokenizer tok;
        using (var s = ModelSession.Open(folder)) tok = s.Tokenizer;
        EditedModel.Settle(folder); // an edited folder holds what its journal says before it is read
        var backend = (device ?? DeviceChoice.Cpu).CreateBackend();
        Model? model = null;
        try
        {
            model = Model.Load(folder, backend);
            var lm = new LoadedModel(folder, backend, model, tok);
            // an edited folder's LEMoE edits take part in every forward
            lm.Tf.Adaptor = EditedModel.LoadAdaptor(folder, model);
            return lm;
        }
        catch { model?.Dispose(); backend.Dispose(); throw; }
    }

    /// <summary>The greedy continuation of <paramref name="prompt"/> (up to <paramref name="maxTokens"/>, stopping at EOS), as text.</summary>
    public string GreedyAnswer(string prompt, int maxTokens = 3) => new Generator(Tf).GreedyText(Tok, prompt, maxTokens);

    public void Dispose()
    {
        Tf.Dispose();
        Model.Dispose();
        Backend.Dispose();
    }
}

/// <summary>
/// Errors of the editing library that the user can fix (a malformed dataset, a folder that is not an
/// edited model, reverting twice) become usage errors, so they end as one line with exit code 2.
/// </summary>
internal static class EditingErrors
{
    public static int Guard(Func<int> action)
    {
        try { return action(); }
        catch (DatasetFormatException e) { throw new CliUsageException(e.Message); }
        catch (JournalException e) { throw new CliUsageException(e.Message); }
        catch (System.Text.Json.JsonException e) { throw new CliUsageException(e.Message.Split('\n')[0]); }
        catch (InvalidOperationException e) when (e.GetType() == typeof(InvalidOperationException)) { throw new CliUsageException(e.Message); }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException) { throw new CliUsageException(e.Message); }
    }

    /// <summary>"2,3" -> [2, 3], each within [0, layers).</summary>
    public static int[] ParseLayers(string text, int layers, string option)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries);
        var result = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out result[i]))
                throw new CliUsageException($"{option}: '{parts[i]}' is not a layer number (expected e.g. {option} 2,3)");
            if (result[i] < 0 || result[i] >= layers)
                throw new CliUsageException($"{option}: layer {result[i]} is outside the model's layers 0..{layers - 1}");
        }
        return result;
    }
}
