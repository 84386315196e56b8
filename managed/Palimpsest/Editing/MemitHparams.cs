using System.Text.Json;
using System.Text.Json.Serialization;

namespace Palimpsest.Editing;

/// <summary>MEMIT's hyper-parameters with the reference names (kmeng01/memit hparams/MEMIT/*.json).</summary>
public sealed record MemitHparams
{
    [JsonPropertyName("layers")] public int[] Layers { get; init; } = [13, 14, 15, 16, 17];
    [JsonPropertyName("fact_token")] public string FactToken { get; init; } = "subject_last";
    [JsonPropertyName("v_num_grad_steps")] public int VNumGradSteps { get; init; } = 20;
    [JsonPropertyName("v_lr")] public double VLr { get; init; } = 0.5;
    [JsonPropertyName("v_loss_layer")] public int VLossLayer { get; init; } = 47;
    [JsonPropertyName("v_weight_decay")] public double VWeightDecay { get; init; } = 0.5;
    [JsonPropertyName("clamp_norm_factor")] public double ClampNormFactor { get; init; } = 0.75;
    [JsonPropertyName("kl_factor")] public double KlFactor { get; init; } = 0.0625;
    [JsonPropertyName("mom2_adjustment")] public bool Mom2Adjustment { get; init; } = true;
    [JsonPropertyName("mom2_update_weight")] public double Mom2UpdateWeight { get; init; } = 20000;
    /// <summary>Seed of the context-template sampler (ours; the reference is unseeded).</summary>
    [JsonPropertyName("context_template_seed")] public int ContextTemplateSeed { get; init; } = 0;
    /// <summary>
    /// Tokens of each generated context prefix (memit_main.get_context_templates: 5 prefixes of 10,
    /// fixed there; a setting here, as ROME's context_template_length_params is).
    /// </summary>
    [JsonPropertyName("context_template_length")] public int ContextTemplateLength { get; init; } = 10;
    [JsonPropertyName("v_early_stop_loss")] public double VEarlyStopLoss { get; init; } = 5e-2;

    /// <summary>Norm-Anchor Scaling (NAS): each solved value v* gets the anchor norm measured on the unedited model (<see cref="NormAnchor"/>). Off by default; written only when on.</summary>
    [JsonPropertyName("norm_anchor"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool NormAnchor { get; init; }
    /// <summary>NAS: requests sampled to measure the anchor (the reference's nas_restart; null: its default, 1,000).</summary>
    [JsonPropertyName("nas_restart"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? NasRestart { get; init; }
    /// <summary>NAS: the anchor norm itself (ours; 0: measure it on the model before the first edit).</summary>
    [JsonPropertyName("nas_norm"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public double NasNorm { get; init; }

    /// <summary>Published values for GPT2-XL (hparams/MEMIT/gpt2-xl.json).</summary>
    public static MemitHparams Gpt2Xl { get; } = new();

    /// <summary>Published values for GPT-J 6B (hparams/MEMIT/EleutherAI_gpt-j-6B.json).</summary>
    public static MemitHparams GptJ6B { get; } = new() { Layers = [3, 4, 5, 6, 7, 8], VLossLayer = 27, ClampNormFactor = 0.75, VWeightDecay = 0.5, Mom2UpdateWeight = 15000 };

    public string ToJson() => JsonSerializer.Serialize(this, MemitHparamsJson.Default.MemitHparams);

    /// <summary>The defaults with the fields of json laid over them; unknown fields are refused.</summary>
    public static MemitHparams FromJson(string json, string where = "hparams")
    {
        var merged = HparamsOverlay.Merge(new MemitHparams().ToJson(), json, where, Editors.LocateAndEditReferenceFields, HparamsOverlay.NasFields);
        return HparamsOverlay.Deserialize(merged, MemitHparamsJson.Default.MemitHparams, where);
    }
}

[JsonSerializable(typeof(MemitHparams))]
internal sealed partial class MemitHparamsJson : JsonSerializerContext;
