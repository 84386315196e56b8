using System.Text.Json;
using System.Text.Json.Nodes;
using Palimpsest.Editing;
using Palimpsest.Journal;

namespace Palimpsest.Cli;

/// <summary>
/// One editing method as `palimpsest edit` drives it: its hyper-parameters (a JSON file laid over the
/// method's defaults, the layers overridable from the command line), whether it needs key statistics,
/// and how to build the editor and read the loss of its last δ optimisation.
/// </summary>
internal sealed class EditMethod
{
    private EditMethod(string name, int[] layers, bool needsStats, string hparamsJson, string factToken, Func<LoadedModel, Func<int, double[]>, IEditor> make)
    {
        Name = name; Layers = layers; NeedsStats = needsStats; HparamsJson = hparamsJson; FactToken = factToken; _make = make;
    }

    private readonly Func<LoadedModel, Func<int, double[]>, IEditor> _make;

    public string Name { get; }
    public int[] Layers { get; }
    public bool NeedsStats { get; }
    /// <summary>The hyper-parameters as recorded in the journal.</summary>
    public string HparamsJson { get; }
    /// <summary>The token whose key the editor rewrites (hparams fact_token).</summary>
    public string FactToken { get; }
    /// <summary>ROME and WilKE edit one request at a time; MEMIT and AlphaEdit take batches.</summary>
    public bool Batched => Name is not ("rome" or "wilke");

    public IEditor Create(LoadedModel lm, Func<int, double[]> secondMoment) => _make(lm, secondMoment);

    /// <summary>
    /// The editor for lm, with the key statistics of its layers loaded or computed (cached) from the
    /// --stats-corpus spec when the method needs them; a missing corpus is a usage error naming the option.
    /// </summary>
    /// <param name="alsoLayers">further layers the editor may be asked to edit (the monitor's --move-to)</param>
    /// <param name="anchorPool">requests a norm-anchored editor measures its anchor norm on (the command's dataset)</param>
    public IEditor Create(LoadedModel lm, string? corpus, long? limitTokens, string? cache, CliIo io, IReadOnlyList<int>? alsoLayers = null,
        IReadOnlyList<EditRequest>? anchorPool = null)
    {
        IEditor editor;
        if (!NeedsStats) editor = _make(lm, l => throw new InvalidOperationException($"{Name} asked for the statistics of layer {l} without mom2_adjustment"));
        else
        {
            if (corpus is null) throw new CliUsageException($"{Name} needs the key statistics of the edited layers: give --stats-corpus FILE|facts:PATH");
            var layers = Layers.Concat(alsoLayers ?? []).Distinct().Order().ToArray();
            var stats = KeyStatsOptions.GetOrCompute(lm, KeyStatsOptions.Load(corpus, lm), layers, KeyStatsOptions.CacheDir(cache), limitTokens, io);
            editor = _make(lm, l => stats[l].Matrix);
        }
        if (editor is IAnchoredEditor { NormAnchored: true } anchored) anchored.AnchorPool = anchorPool;
        return editor;
    }

    /// <summary>"initial -> final" loss of the last δ (v* / z*) optimisation(s), or "-" where the editor does not expose it.</summary>
    public static string Loss(IEditor e)
    {
        static string F(double x) => x.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture);
        return e switch
        {
            Rome { LastTrace: { } t } => $"{F(t.InitialLoss)} -> {F(t.FinalLoss)}",
            Wilke { LastScan: { } s } => $"layer {s.Chosen} (LA {F(s.La[s.Chosen])})",
            Memit { LastZ: { Count: > 0 } z } => $"{F(z.Average(r => r.InitialLoss))} -> {F(z.Average(r => r.FinalLoss))}",
            _ => "-",
        };
    }

    /// <param name="name">rome, memit, alphaedit or wilke.</param>
    private static void CheckFactToken(string factToken)
    {
        if (!FactProbes.FactTokens.Contains(factToken))
            throw new CliUsageException($"hparams fact_token '{factToken}': one of {string.Join(", ", FactProbes.FactTokens)}");
    }

    /// <param name="file">hyper-parameters JSON, or null for the method's defaults.</param>
    /// <param name="layers">--layers, overriding the file's.</param>
    public static EditMethod Parse(string name, string? file, int[]? layers)
    {
        if (file is null && layers is null) throw new CliUsageException("give --layers (pick them with palimpsest trace) or --hparams FILE.json");
        switch (name.ToLowerInvariant())
        {
            case "rome":
            {
                var hp = RomeHparams.FromJson(Merge(new RomeHparams().ToJson(), file), Where(file));
                if (layers is not null) hp = hp with { Layers = layers };
                if (hp.Layers.Length != 1) throw new CliUsageException($"ROME edits one layer; {hp.Layers.Length} given (--layers L)");
                CheckFactToken(hp.FactToken);
                CheckSteps(hp.VNumGradSteps);
                return new EditMethod("rome", hp.Layers, hp.Mom2Adjustment, hp.ToJson(), hp.FactToken, (lm, c) => new Rome(hp, lm.Tok, c));
            }
            case "memit":
            {
                var hp = MemitHparams.FromJson(Merge(new MemitHparams().ToJson(), file), Where(file));
                if (layers is not null) hp = hp with { Layers = layers };
                CheckFactToken(hp.FactToken);
                CheckSteps(hp.VNumGradSteps);
                return new EditMethod("memit", hp.Layers, hp.Mom2Adjustment, hp.ToJson(), hp.FactToken, (lm, c) => new Memit(hp, lm.Tok, c));
            }
            case "alphaedit":
            {
                // AlphaEditHparams has no source-generated serializer; the CLI is not trimmed, so reflection is fine.
                var options = new JsonSerializerOptions();
                AlphaEditHparams hp;
                try { hp = JsonSerializer.Deserialize<AlphaEditHparams>(Merge(JsonSerializer.Serialize(new AlphaEditHparams(), options), file), options)!; }
                catch (JsonException e) { throw new CliUsageException($"{Where(file)}: {e.Message.Split('\n')[0]}"); }
                if (layers is not null) hp = hp with { Layers = layers };
                CheckFactToken(hp.FactToken);
                CheckSteps(hp.VNumGradSteps);
                return new EditMethod("alphaedit", hp.Layers, true, JsonSerializer.Serialize(hp, options), hp.FactToken, (lm, c) => new AlphaEdit(hp, lm.Tok, c));
            }
            case "ultraedit":
            {
                var hp = UltraEditHparams.FromJson(Merge(new UltraEditHparams().ToJson(), file), Where(file));
                if (layers is not null) hp = hp with { Layers = layers };
                return new EditMethod("ultraedit", hp.Layers, false, hp.ToJson(), "last", (lm, c) => new UltraEdit(hp, lm.Tok));
            }
            case "wilke":
            {
                // ROME's hparams plus scanning_ceiling (layers 0..ceiling-1 are scanned per edit)
                if (layers is not null) throw new CliUsageException("--layers: WilKE chooses each edit's layer itself; set scanning_ceiling in --hparams");
                var node = JsonNode.Parse(Merge(new RomeHparams().ToJson(), file))!.AsObject();
                if (node["scanning_ceiling"] is not JsonValue cv || !cv.TryGetValue<int>(out int ceiling) || ceiling < 1)
                    throw new CliUsageException($"{Where(file)}: WilKE needs \"scanning_ceiling\": a positive integer (layers 0..ceiling-1 are scanned)");
                node.Remove("scanning_ceiling");
                var hp = RomeHparams.FromJson(node.ToJsonString(), Where(file));
                CheckFactToken(hp.FactToken);
                CheckSteps(hp.VNumGradSteps);
                node["scanning_ceiling"] = ceiling;
                node.Remove("layers"); // ROME's layer is not used: the journal and reports record the layers scanned instead
                var scanned = Enumerable.Range(0, ceiling).ToArray();
                return new EditMethod("wilke", scanned, hp.Mom2Adjustment, node.ToJsonString(), hp.FactToken, (lm, c) => new Wilke(hp, ceiling, lm.Tok, c));
            }
            default:
                throw new CliUsageException($"--method '{name}': unknown method (expected rome, memit, alphaedit or wilke)");
        }
    }

    private static void CheckSteps(int steps)
    {
        if (steps < 1) throw new CliUsageException($"hparams v_num_grad_steps must be >= 1 (got {steps})");
    }

    internal static string Where(string? file) => file is null ? "default hparams" : $"hparams file '{file}'";

    /// <summary>
    /// The file's keys laid over the defaults' JSON, so that keys the file leaves out keep the method's
    /// defaults (the source-generated deserializer alone would leave them empty) and reference files
    /// with extra keys (mom2_dataset, rewrite_module_tmp, ...) still load.
    /// </summary>
    internal static string Merge(string defaultsJson, string? file)
    {
        if (file is null) return defaultsJson;
        if (!File.Exists(file)) throw new FileNotFoundException($"hparams file '{file}' not found", file);
        var merged = JsonNode.Parse(defaultsJson)!.AsObject();
        JsonNode? given;
        try { given = JsonNode.Parse(File.ReadAllText(file)); }
        catch (JsonException e) { throw new CliUsageException($"hparams file '{file}': malformed JSON ({e.Message.Split('\n')[0]})"); }
        if (given is not JsonObject obj) throw new CliUsageException($"hparams file '{file}': expected a JSON object");
        foreach (var (k, v) in obj) merged[k] = v?.DeepClone();
        return merged.ToJsonString();
    }

    /// <summary>
    /// AlphaEdit protects the keys of earlier edits (C_p). Those of edits made by earlier runs are
    /// recovered from the journal: the requests of its active AlphaEdit edits, keys recomputed with
    /// the current weights (as the reference recomputes them with the edited model).
    /// </summary>
    public static int RememberJournal(IEditor editor, EditedModel em, LoadedModel lm)
    {
        if (editor is not AlphaEdit ae) return 0;
        var earlier = new List<EditRequest>();
        foreach (var e in em.List().Where(e => !e.Reverted && e.Method == "alphaedit"))
        {
            using var doc = JsonDocument.Parse(e.RequestsJson);
            foreach (var r in doc.RootElement.EnumerateArray())
                earlier.Add(new EditRequest
                {
                    Subject = r.GetProperty("subject").GetString()!, Prompt = r.GetProperty("prompt").GetString()!,
                    TargetNew = r.GetProperty("target_new").GetString()!,
                });
        }
        if (earlier.Count > 0) ae.Remember(lm.Tf, earlier);
        return earlier.Count;
    }
}
