using System.Text.Json;
using System.Text.Json.Serialization;

namespace Palimpsest.Editing;

/// <summary>
/// UltraEdit's hyper-parameters (Gu et al. 2025; EasyEdit easyeditor/models/ultraedit, hparams/ULTRAEDIT/*.yaml),
/// with the reference's field names where it has them. The reference names the edited modules
/// (inner_params, e.g. model.layers.29.mlp.down_proj); we edit MLP down-projections and name their
/// layers, as ROME's and MEMIT's "layers" do.
/// </summary>
public sealed record UltraEditHparams
{
    /// <summary>Blocks whose MLP down-projection is edited (the reference's inner_params, e.g. Mistral-7B: 29, 30).</summary>
    [JsonPropertyName("layers")] public int[] Layers { get; init; } = [];
    /// <summary>The lr coefficient: each value row is −lr · ‖k̂‖² · ĝ (k̂, ĝ the normalised key and value gradient).</summary>
    [JsonPropertyName("lr")] public double Lr { get; init; } = 1e-6;
    /// <summary>Rows that give keys and value gradients: "mask", every token of prompt + target (the reference's
    /// hparams); "ans", the target's tokens only.</summary>
    [JsonPropertyName("token")] public string Token { get; init; } = "mask";
    /// <summary>Requests per forward + backward; the loss is the mean over that batch's target tokens (the reference's batch_size).</summary>
    [JsonPropertyName("batch_size")] public int BatchSize { get; init; } = 10;
    /// <summary>The reference's editor_batch_size: how many rows it normalises at once, to bound GPU memory. The result does not
    /// depend on it and our normalisation goes row by row, so it is accepted (reference files carry it), recorded, and changes nothing.</summary>
    [JsonPropertyName("editor_batch_size")] public int EditorBatchSize { get; init; } = 1024;

    /// <summary>The reference's fields that configure its harness, not the edit (model, device, precision, output); accepted and ignored.</summary>
    public static IReadOnlyList<string> ReferenceOnlyFields { get; } =
    [
        "alg_name", "model_name", "model_class", "tokenizer_class", "tokenizer_name", "inner_params", "device", "alg", "dropout",
        "no_grad_layers", "batch_size_once", "silent", "max_length", "half", "model_parallel", "results_dir",
    ];

    public string ToJson() => JsonSerializer.Serialize(this, UltraEditHparamsJson.Default.UltraEditHparams);

    /// <summary>The defaults with the fields of json laid over them; unknown fields are refused.</summary>
    public static UltraEditHparams FromJson(string json, string where = "hparams")
    {
        var merged = HparamsOverlay.Merge(new UltraEditHparams().ToJson(), json, where, ReferenceOnlyFields);
        UltraEditHparams h;
        h = HparamsOverlay.Deserialize(merged, UltraEditHparamsJson.Default.UltraEditHparams, where);
        h.Validate(where);
        return h;
    }

    internal void Validate(string where = "hparams")
    {
        if (Layers.Length == 0) throw new ArgumentException($"{where}: layers: UltraEdit needs at least one layer whose down-projection it edits");
        if (Layers.Distinct().Count() != Layers.Length) throw new ArgumentException($"{where}: layers [{string.Join(", ", Layers)}] name a layer twice");
        if (!(Lr > 0) || double.IsInfinity(Lr)) throw new ArgumentException($"{where}: lr must be a positive number (got {Lr})");
        if (Token is not ("mask" or "ans")) throw new ArgumentException($"{where}: token must be \"mask\" (every token) or \"ans\" (the target's tokens) (got \"{Token}\")");
        if (BatchSize < 1) throw new ArgumentException($"{where}: batch_size must be at least 1 (got {BatchSize})");
        if (EditorBatchSize < 1) throw new ArgumentException($"{where}: editor_batch_size must be at least 1 (got {EditorBatchSize})");
    }
}

[JsonSerializable(typeof(UltraEditHparams))]
internal sealed partial class UltraEditHparamsJson : JsonSerializerContext;
