using System.Globalization;
using System.Text.Json.Nodes;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>What an editing method can do; callers branch on these, never on a method's name or type.</summary>
[Flags]
public enum EditorCapabilities
{
    None = 0,
    /// <summary>Takes several requests per edit (MEMIT, AlphaEdit, UltraEdit, LEMoE); the others edit one at a time.</summary>
    Batched = 1,
    /// <summary>Chooses each edit's layer itself (WilKE): the caller gives no layers.</summary>
    ChoosesLayer = 2,
    /// <summary>Can make its edit at a layer the caller names (<see cref="ILayerEditor"/>: ROME), as the interference monitor's move needs.</summary>
    EditsAtGivenLayer = 4,
    /// <summary>Changes an adaptor beside the weights instead of the weights (LEMoE): no delta to forecast, journaled as an adaptor edit.</summary>
    Adaptor = 8,
    /// <summary>Keeps state beyond the weights (AlphaEdit's C_p, UltraEdit's normaliser, LEMoE's adaptor): saved with a lifelong run, rebuilt from the journal.</summary>
    RemembersState = 16,
    /// <summary>Can rescale its solved values to a norm anchor ("norm_anchor": true, <see cref="IAnchoredEditor"/>).</summary>
    NormAnchor = 32,
}

/// <summary>
/// A method with its hyper-parameters read: the record (RomeHparams, ...), the JSON the journal
/// records, the layers it edits (WilKE: the layers it scans; LEMoE: the adaptor's), the token whose
/// key it rewrites, whether it needs the key statistics C, and the fields of a reference file that
/// configure the reference's harness and were ignored.
/// </summary>
public sealed record EditorSettings
{
    public required EditorKind Kind { get; init; }
    public required object Hparams { get; init; }
    public required string HparamsJson { get; init; }
    public required int[] Layers { get; init; }
    public required string FactToken { get; init; }
    public required bool NeedsKeyStatistics { get; init; }
    public IReadOnlyList<string> IgnoredFields { get; init; } = [];

    /// <summary>The same settings editing these layers instead (a command line's --layers); ArgumentException where the method cannot.</summary>
    public EditorSettings WithLayers(int[] layers) => Kind.Parse(HparamsJson, layers: layers);

    /// <summary>The editor. secondMoment: C_l [f·f] of a layer (asked for only when <see cref="NeedsKeyStatistics"/>).</summary>
    public IEditor Create(ITextTokenizer tokenizer, Func<int, double[]> secondMoment) => Kind.Make(this, tokenizer, secondMoment);
}

/// <summary>One row of the editor table: a method's name, what it can do, its hyper-parameters' type and strict parser, and how to build it.</summary>
public sealed class EditorKind
{
    private readonly Func<EditorKind, string, string, EditorSettings> _parse;
    // hparams JSON -> the same with the given layers in the method's own field(s) (where: for messages)
    private readonly Func<string, int[], string, string> _layersInto;
    internal readonly Func<EditorSettings, ITextTokenizer, Func<int, double[]>, IEditor> Make;

    internal EditorKind(string name, string summary, EditorCapabilities capabilities, Type hparamsType, IReadOnlyList<string> referenceFields,
        Func<EditorKind, string, string, EditorSettings> parse, Func<string, int[], string, string> layersInto,
        Func<EditorSettings, ITextTokenizer, Func<int, double[]>, IEditor> make)
    {
        Name = name; Summary = summary; Capabilities = capabilities; HparamsType = hparamsType; ReferenceFields = referenceFields;
        _parse = parse; _layersInto = layersInto; Make = make;
    }

    /// <summary>The one spelling: --method, the journal, lifelong reports.</summary>
    public string Name { get; }
    public string Summary { get; }
    public EditorCapabilities Capabilities { get; }
    public Type HparamsType { get; }
    /// <summary>Fields of the reference implementation's hparams files that configure its harness (module names, statistics dataset, ...): accepted, ignored, reported.</summary>
    public IReadOnlyList<string> ReferenceFields { get; }

    public bool Has(EditorCapabilities c) => (Capabilities & c) == c;

    /// <summary>The defaults with the fields of json laid over them; an unknown field or bad value is an ArgumentException naming it (where: the file, for the message).</summary>
    /// <param name="layers">a command line's --layers, put into the JSON before it is checked (a method whose defaults name no layer needs them to parse at all)</param>
    public EditorSettings Parse(string json, string where = "hparams", int[]? layers = null)
    {
        if (layers is not null) json = _layersInto(json, layers, where);
        return _parse(this, json, where) with { IgnoredFields = HparamsOverlay.Ignored(json, ReferenceFields) };
    }

    public override string ToString() => Name;
}

/// <summary>
/// The editor table: every editing method the engine has, one row each. The CLI's --method, the
/// journal's method column and lifelong reports all use these names.
/// </summary>
public static class Editors
{
    /// <summary>kmeng01/rome, kmeng01/memit and AlphaEdit hparams fields that name modules, the statistics dataset and the model: we take C from --stats-corpus and modules from the architecture.</summary>
    public static readonly IReadOnlyList<string> LocateAndEditReferenceFields =
    [
        "model_name", "alg_name", "rewrite_module_tmp", "layer_module_tmp", "mlp_module_tmp", "attn_module_tmp", "ln_f_module", "lm_head_module",
        "mom2_dataset", "mom2_n_samples", "mom2_dtype", "layer_selection", "use_nas",
    ];

    /// <summary>AlphaEdit's files carry MEMIT's mom2 fields too, which its update does not use (C enters only through the projector P).</summary>
    public static readonly IReadOnlyList<string> AlphaEditReferenceFields = [.. LocateAndEditReferenceFields, "mom2_adjustment", "mom2_update_weight"];

    public static EditorKind Rome { get; } = new("rome", "rank-one edit of one MLP layer (Meng et al. 2022)",
        EditorCapabilities.EditsAtGivenLayer | EditorCapabilities.NormAnchor, typeof(RomeHparams), LocateAndEditReferenceFields,
        (k, json, where) =>
        {
            var hp = RomeHparams.FromJson(json, where);
            if (hp.Layers.Length != 1) throw new ArgumentException($"{where}: ROME edits one layer; layers has {hp.Layers.Length}");
            return Settings(k, hp, hp.ToJson(), hp.Layers, hp.FactToken, hp.Mom2Adjustment, hp.VNumGradSteps, where);
        },
        (json, layers, where) => layers.Length == 1 ? Replace(json, "layers", layers, where) : throw new ArgumentException($"ROME edits one layer; {layers.Length} given"),
        (s, tok, c) => new Rome((RomeHparams)s.Hparams, tok, c));

    public static EditorKind Memit { get; } = new("memit", "many edits spread over several MLP layers (Meng et al. 2023)",
        EditorCapabilities.Batched | EditorCapabilities.NormAnchor, typeof(MemitHparams), LocateAndEditReferenceFields,
        (k, json, where) =>
        {
            var hp = MemitHparams.FromJson(json, where);
            return Settings(k, hp, hp.ToJson(), hp.Layers, hp.FactToken, hp.Mom2Adjustment, hp.VNumGradSteps, where);
        },
        (json, layers, where) => Replace(json, "layers", layers, where),
        (s, tok, c) => new Memit((MemitHparams)s.Hparams, tok, c));

    public static EditorKind AlphaEdit { get; } = new("alphaedit", "MEMIT's update projected onto the null space of preserved keys (Fang et al. 2025)",
        EditorCapabilities.Batched | EditorCapabilities.RemembersState | EditorCapabilities.NormAnchor, typeof(AlphaEditHparams), AlphaEditReferenceFields,
        (k, json, where) =>
        {
            var hp = AlphaEditHparams.FromJson(json, where);
            return Settings(k, hp, hp.ToJson(), hp.Layers, hp.FactToken, true, hp.VNumGradSteps, where);
        },
        (json, layers, where) => Replace(json, "layers", layers, where),
        (s, tok, c) => new AlphaEdit((AlphaEditHparams)s.Hparams, tok, c));

    public static EditorKind Wilke { get; } = new("wilke", "ROME at the layer whose edit disturbs the model least, chosen per edit (Hu et al. 2024)",
        EditorCapabilities.ChoosesLayer, typeof(RomeHparams), LocateAndEditReferenceFields,
        (k, json, where) =>
        {
            // ROME's hparams plus scanning_ceiling (layers 0..ceiling-1 are scanned per edit)
            var node = JsonNode.Parse(HparamsOverlay.Merge(new RomeHparams().ToJson(), json, where, LocateAndEditReferenceFields, ["scanning_ceiling", .. HparamsOverlay.NasFields]))!.AsObject();
            if (node["scanning_ceiling"] is not JsonValue cv || !cv.TryGetValue<int>(out int ceiling) || ceiling < 1)
                throw new ArgumentException($"{where}: WilKE needs \"scanning_ceiling\": a positive integer (layers 0..ceiling-1 are scanned)");
            node.Remove("scanning_ceiling");
            var hp = RomeHparams.FromJson(node.ToJsonString(), where);
            node = JsonNode.Parse(hp.ToJson())!.AsObject();
            node["scanning_ceiling"] = ceiling;
            node.Remove("layers"); // ROME's layer is not used: the journal and reports record the layers scanned instead
            return Settings(k, new WilkeSettings(hp, ceiling), node.ToJsonString(), Enumerable.Range(0, ceiling).ToArray(), hp.FactToken, hp.Mom2Adjustment, hp.VNumGradSteps, where);
        },
        (_, _, _) => throw new ArgumentException("--layers: WilKE chooses each edit's layer itself; set scanning_ceiling in the hparams"),
        (s, tok, c) => new Wilke(((WilkeSettings)s.Hparams).Rome, ((WilkeSettings)s.Hparams).ScanningCeiling, tok, c));

    public static EditorKind UltraEdit { get; } = new("ultraedit", "one forward and backward per batch, lifelong-normalised ridge solve (Gu et al. 2025)",
        EditorCapabilities.Batched | EditorCapabilities.RemembersState, typeof(UltraEditHparams), UltraEditHparams.ReferenceOnlyFields,
        (k, json, where) =>
        {
            var hp = UltraEditHparams.FromJson(json, where);
            return new EditorSettings { Kind = k, Hparams = hp, HparamsJson = hp.ToJson(), Layers = hp.Layers, FactToken = "last", NeedsKeyStatistics = false };
        },
        (json, layers, where) => Replace(json, "layers", layers, where),
        (s, tok, _) => new UltraEdit((UltraEditHparams)s.Hparams, tok));

    public static EditorKind Lemoe { get; } = new("lemoe", "a mixture-of-experts adaptor beside one MLP, one expert per batch (Wang & Li 2024)",
        EditorCapabilities.Batched | EditorCapabilities.Adaptor | EditorCapabilities.RemembersState, typeof(LemoeHparams), [],
        (k, json, where) =>
        {
            var hp = LemoeHparams.FromJson(json, where);
            return new EditorSettings { Kind = k, Hparams = hp, HparamsJson = hp.ToJson(), Layers = [hp.Layer], FactToken = "last", NeedsKeyStatistics = false };
        },
        (json, layers, where) => layers.Length == 1 ? Replace(json, "layer", layers[0], where) : throw new ArgumentException($"--layers: LEMoE adapts one layer ({layers.Length} given)"),
        (s, tok, _) => new Lemoe((LemoeHparams)s.Hparams, tok));

    /// <summary>Every method, in the order help texts list them.</summary>
    public static IReadOnlyList<EditorKind> All { get; } = [Rome, Memit, AlphaEdit, Wilke, UltraEdit, Lemoe];

    /// <summary>"rome, memit, alphaedit, wilke, ultraedit or lemoe".</summary>
    public static string Names => string.Join(", ", All.Take(All.Count - 1).Select(k => k.Name)) + " or " + All[^1].Name;

    /// <summary>The method of that name (case-insensitive: journals before the table wrote "ROME", "AlphaEdit"); ArgumentException listing them otherwise.</summary>
    public static EditorKind Get(string name) =>
        All.FirstOrDefault(k => string.Equals(k.Name, name, StringComparison.OrdinalIgnoreCase))
        ?? throw new ArgumentException($"--method '{name}': unknown method (expected {Names})");

    /// <summary>A loss or score as the results tables print it ("0.052").</summary>
    public static string Loss(double x) => x.ToString("0.000", CultureInfo.InvariantCulture);

    /// <summary>
    /// v_loss_layer: the reference reads the v*/z* loss through the final norm and head at that
    /// layer's output (GPT2-XL: 47, its last layer). We read it at the model's output, so a value at
    /// or past the last layer is that; an earlier one (a logit lens) is refused rather than ignored.
    /// </summary>
    internal static void CheckLossLayer(int vLossLayer, int modelLayers)
    {
        if (vLossLayer < modelLayers - 1)
            throw new ArgumentException($"hparams v_loss_layer {vLossLayer}: the v*/z* loss is read at the model's output, after its last layer ({modelLayers - 1}); "
                + $"a loss at an earlier layer is not supported (set {modelLayers - 1})");
    }

    private static EditorSettings Settings(EditorKind k, object hp, string json, int[] layers, string factToken, bool stats, int steps, string where)
    {
        if (!FactProbes.FactTokens.Contains(factToken))
            throw new ArgumentException($"{where}: fact_token '{factToken}': one of {string.Join(", ", FactProbes.FactTokens)}");
        if (steps < 1) throw new ArgumentException($"{where}: v_num_grad_steps must be >= 1 (got {steps})");
        return new EditorSettings { Kind = k, Hparams = hp, HparamsJson = json, Layers = layers, FactToken = factToken, NeedsKeyStatistics = stats };
    }

    private static string Replace(string json, string field, JsonNode value, string where)
    {
        var node = HparamsOverlay.ParseObject(json, where);
        node[field] = value;
        return node.ToJsonString();
    }

    private static string Replace(string json, string field, int[] values, string where) =>
        Replace(json, field, new JsonArray(values.Select(v => (JsonNode)v).ToArray()), where);
}

/// <summary>WilKE's hyper-parameters: ROME's, and the layers scanned per edit (0..ScanningCeiling−1).</summary>
public sealed record WilkeSettings(RomeHparams Rome, int ScanningCeiling);
