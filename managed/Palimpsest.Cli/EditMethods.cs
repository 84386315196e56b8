using System.Text.Json;
using System.Text.Json.Nodes;
using Palimpsest.Editing;
using Palimpsest.Journal;

namespace Palimpsest.Cli;

/// <summary>
/// One editing method as the commands drive it: a row of the library's editor table
/// (<see cref="Editors"/>) with its hyper-parameters read from --hparams (laid over the method's
/// defaults, the layers overridable from the command line), and how to build the editor with the
/// key statistics it needs. Every method goes through here; commands branch on capabilities only.
/// </summary>
internal sealed class EditMethod
{
    private EditMethod(EditorSettings settings) { Settings = settings; }

    public EditorSettings Settings { get; }
    public EditorKind Kind => Settings.Kind;
    public string Name => Kind.Name;
    public int[] Layers => Settings.Layers;
    public bool NeedsStats => Settings.NeedsKeyStatistics;
    /// <summary>The hyper-parameters as recorded in the journal.</summary>
    public string HparamsJson => Settings.HparamsJson;
    /// <summary>The token whose key the editor rewrites (hparams fact_token).</summary>
    public string FactToken => Settings.FactToken;
    /// <summary>Takes several requests per edit (the others edit one at a time).</summary>
    public bool Batched => Kind.Has(EditorCapabilities.Batched);

    /// <param name="anchorPool">requests a norm-anchored editor measures its anchor norm on (the command's dataset)</param>
    public IEditor Create(LoadedModel lm, Func<int, double[]> secondMoment, IReadOnlyList<EditRequest>? anchorPool = null)
    {
        var editor = Settings.Create(lm.Tok, secondMoment);
        if (editor is IAnchoredEditor { NormAnchored: true } anchored) anchored.AnchorPool = anchorPool;
        return editor;
    }

    /// <summary>
    /// The editor for lm, with the key statistics of its layers loaded or computed (cached) from the
    /// --stats-corpus spec when the method needs them; a missing corpus is a usage error naming the option.
    /// </summary>
    /// <param name="alsoLayers">further layers the editor may be asked to edit (the monitor's --move-to)</param>
    /// <param name="anchorPool">requests a norm-anchored editor measures its anchor norm on (the command's dataset)</param>
    /// <param name="times">where the statistics' time goes: phase "key statistics", its parts "read corpus" and the cache's</param>
    public IEditor Create(LoadedModel lm, string? corpus, long? limitTokens, string? cache, CliIo io, IReadOnlyList<int>? alsoLayers = null,
        IReadOnlyList<EditRequest>? anchorPool = null, PhaseReport? times = null)
    {
        if (!NeedsStats) return Create(lm, l => throw new InvalidOperationException($"{Name} asked for the statistics of layer {l} without mom2_adjustment"), anchorPool);
        if (corpus is null) throw new CliUsageException($"{Name} needs the key statistics of the edited layers: give --stats-corpus FILE|facts:PATH");
        var layers = Layers.Concat(alsoLayers ?? []).Distinct().Order().ToArray();
        var parts = times?.Inner(KeyStatisticsPhase);
        var stats = PhaseTimes.Time(times?.Phases, KeyStatisticsPhase, () => KeyStatsOptions.GetOrCompute(lm,
            PhaseTimes.Time(parts, "read corpus", () => KeyStatsOptions.Load(corpus, lm)), layers, KeyStatsOptions.CacheDir(cache), limitTokens, io, parts));
        return Create(lm, l => stats[l].Matrix, anchorPool);
    }

    /// <summary>The phase of a <see cref="PhaseReport"/> that loading or computing the key statistics is.</summary>
    public const string KeyStatisticsPhase = "key statistics";

    /// <param name="name">a method of the editor table.</param>
    /// <param name="file">hyper-parameters JSON, or null for the method's defaults.</param>
    /// <param name="layers">--layers, overriding the file's.</param>
    /// <param name="warn">where a line naming the reference-only fields the file had (ignored) goes.</param>
    public static EditMethod Parse(string name, string? file, int[]? layers, TextWriter? warn = null)
    {
        var kind = KindOf(name);
        if (file is null && layers is null && !kind.Has(EditorCapabilities.ChoosesLayer) && !kind.Has(EditorCapabilities.Adaptor))
            throw new CliUsageException("give --layers (pick them with palimpsest trace) or --hparams FILE.json");
        if (file is not null && !File.Exists(file)) throw new FileNotFoundException($"hparams file '{file}' not found", file);
        try
        {
            var settings = kind.Parse(file is null ? "{}" : File.ReadAllText(file), Where(file), layers);
            if (settings.IgnoredFields.Count > 0)
                warn?.WriteLine($"{Where(file)}: ignored the reference's harness field(s) {string.Join(", ", settings.IgnoredFields)} (modules come from the architecture, C from --stats-corpus)");
            return new EditMethod(settings);
        }
        catch (ArgumentException e) { throw new CliUsageException(e.Message); }
    }

    /// <summary>
    /// The method's hyper-parameters from --hparams FILE, or else (no --layers either) from the model
    /// folder's METHOD.json, as data/models/facts-d128-l5 carries them (said in one line on
    /// <paramref name="say"/>); when neither is there, what is missing is added to
    /// <paramref name="missing"/> and the result is null, so that a command can name everything it
    /// lacks in one message.
    /// </summary>
    public static EditMethod? ParseOrDefault(string name, string? file, int[]? layers, string modelFolder, TextWriter say, List<string> missing)
    {
        var kind = KindOf(name);
        if (file is null && layers is null)
        {
            string candidate = Path.Combine(modelFolder, kind.Name + ".json");
            if (File.Exists(candidate))
            {
                file = candidate;
                say.WriteLine($"{kind.Name}: hyper-parameters from the model folder's {candidate} (give --hparams or --layers for others)");
            }
            else if (!kind.Has(EditorCapabilities.Adaptor)) // an adaptor's defaults name its layer (0)
            {
                missing.Add(kind.Has(EditorCapabilities.ChoosesLayer)
                    ? $"--hparams FILE.json with scanning_ceiling ({modelFolder} has no {kind.Name}.json)"
                    : $"--layers (pick them with palimpsest trace) or --hparams FILE.json ({modelFolder} has no {kind.Name}.json)");
                return null;
            }
        }
        return Parse(kind.Name, file, layers, say);
    }

    /// <summary>
    /// The key-statistics corpus: --stats-corpus, or else the model folder's corpus.txt (said in one
    /// line); when the method needs one and neither is there, a missing entry and null.
    /// </summary>
    public static string? CorpusOrDefault(string? given, bool needed, string modelFolder, TextWriter say, List<string> missing)
    {
        if (given is not null)
        {
            if (!File.Exists(KeyStatsOptions.PathOf(given))) throw new FileNotFoundException($"--stats-corpus: file '{KeyStatsOptions.PathOf(given)}' not found", KeyStatsOptions.PathOf(given));
            return given;
        }
        if (!needed) return null;
        string candidate = Path.Combine(modelFolder, "corpus.txt");
        if (File.Exists(candidate))
        {
            say.WriteLine($"key statistics from the model folder's {candidate} (give --stats-corpus for another corpus)");
            return candidate;
        }
        missing.Add($"--stats-corpus FILE|facts:PATH for the key statistics of the edited layers ({modelFolder} has no corpus.txt)");
        return null;
    }

    /// <summary>
    /// The method (hparams, --layers checked against the model) and the key-statistics corpus of a
    /// command on the model folder, each from its option or the folder's defaults; what neither
    /// gives goes into <paramref name="missing"/> (the results are then null).
    /// </summary>
    public static (EditMethod? Method, string? Corpus) Resolve(string folder, string method, string? hparams, string? layersText, string? corpus,
        TextWriter say, List<string> missing)
    {
        using var ms = ModelSession.Open(folder);
        int[]? layers = layersText is { } lt ? EditingErrors.ParseLayers(lt, ms.Config.Layers, "--layers") : null;
        var found = ParseOrDefault(method, hparams, layers, folder, say, missing);
        foreach (int l in found?.Layers ?? [])
            if (l < 0 || l >= ms.Config.Layers) throw new CliUsageException($"layer {l} is outside the model's layers 0..{ms.Config.Layers - 1}");
        return (found, CorpusOrDefault(corpus, found?.NeedsStats ?? true, folder, say, missing));
    }

    /// <summary>One usage error naming everything a command lacks.</summary>
    public static void ThrowIfMissing(List<string> missing)
    {
        if (missing.Count == 1) throw new CliUsageException($"missing {missing[0]}");
        if (missing.Count > 1) throw new CliUsageException($"missing {missing.Count} things: {string.Join("; ", missing.Select((m, i) => $"({i + 1}) {m}"))}");
    }

    internal static string Where(string? file) => file is null ? "default hparams" : $"hparams file '{file}'";

    // the table's row of --method, an unknown name being a usage error that lists the methods
    private static EditorKind KindOf(string name)
    {
        try { return Editors.Get(name); }
        catch (ArgumentException e) { throw new CliUsageException(e.Message); }
    }
}
