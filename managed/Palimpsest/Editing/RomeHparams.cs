using System.Text.Json;
using System.Text.Json.Serialization;

namespace Palimpsest.Editing;

/// <summary>
/// ROME's hyper-parameters, with the reference code's names (kmeng01/rome hparams/ROME/*.json).
/// </summary>
public sealed record RomeHparams
{
    [JsonPropertyName("layers")] public int[] Layers { get; init; } = [17];
    [JsonPropertyName("fact_token")] public string FactToken { get; init; } = "subject_last";
    [JsonPropertyName("v_num_grad_steps")] public int VNumGradSteps { get; init; } = 20;
    [JsonPropertyName("v_lr")] public double VLr { get; init; } = 0.5;
    [JsonPropertyName("v_loss_layer")] public int VLossLayer { get; init; } = 47;
    [JsonPropertyName("v_weight_decay")] public double VWeightDecay { get; init; } = 0.5;
    [JsonPropertyName("clamp_norm_factor")] public double ClampNormFactor { get; init; } = 4;
    [JsonPropertyName("kl_factor")] public double KlFactor { get; init; } = 0.0625;
    [JsonPropertyName("mom2_adjustment")] public bool Mom2Adjustment { get; init; } = true;
    /// <summary>[[length, count], ...] of generated context prefixes (ROME: [[5, 10], [10, 10]]).</summary>
    [JsonPropertyName("context_template_length_params")] public int[][] ContextTemplateLengthParams { get; init; } = [[5, 10], [10, 10]];
    /// <summary>Seed of the top-k sampling that generates the context prefixes (ours: the reference is unseeded).</summary>
    [JsonPropertyName("context_template_seed")] public int ContextTemplateSeed { get; init; } = 0;
    /// <summary>Stop the v* optimisation once the loss is below this (reference: 5e-2).</summary>
    [JsonPropertyName("v_early_stop_loss")] public double VEarlyStopLoss { get; init; } = 5e-2;

    /// <summary>Norm-Anchor Scaling (NAS): each solved value v* gets the anchor norm measured on the unedited model (<see cref="NormAnchor"/>). Off by default; written only when on.</summary>
    [JsonPropertyName("norm_anchor"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool NormAnchor { get; init; }
    /// <summary>NAS: requests sampled to measure the anchor (the reference's nas_restart; null: its default, 1,000).</summary>
    [JsonPropertyName("nas_restart"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? NasRestart { get; init; }
    /// <summary>NAS: the anchor norm itself (ours; 0: measure it on the model before the first edit).</summary>
    [JsonPropertyName("nas_norm"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public double NasNorm { get; init; }

    /// <summary>Published values for GPT2-XL (hparams/ROME/gpt2-xl.json).</summary>
    public static RomeHparams Gpt2Xl { get; } = new();

    /// <summary>Published values for GPT-J 6B (hparams/ROME/EleutherAI_gpt-j-6B.json).</summary>
    public static RomeHparams GptJ6B { get; } = new() { Layers = [5], VLossLayer = 27, KlFactor = 0.0625, VWeightDecay = 0.5 };

    public string ToJson() => JsonSerializer.Serialize(this, HparamsJson.Default.RomeHparams);

    /// <summary>The defaults with the fields of json laid over them; unknown fields are refused.</summary>
    public static RomeHparams FromJson(string json, string where = "hparams")
    {
        var merged = HparamsOverlay.Merge(new RomeHparams().ToJson(), json, where, Editors.LocateAndEditReferenceFields, HparamsOverlay.NasFields);
        return HparamsOverlay.Deserialize(merged, HparamsJson.Default.RomeHparams, where);
    }
}

/// <summary>Source-generated (trim-safe) JSON for the hyper-parameter records.</summary>
[JsonSerializable(typeof(RomeHparams))]
internal sealed partial class HparamsJson : JsonSerializerContext;
