using System.Text.Json;
using System.Text.Json.Serialization;

namespace Palimpsest.Editing;

/// <summary>AlphaEdit's hyper-parameters with the reference names (jianghoucheng/AlphaEdit hparams/AlphaEdit/*.json).</summary>
public sealed record AlphaEditHparams
{
    [JsonPropertyName("layers")] public int[] Layers { get; init; } = [13, 14, 15, 16, 17];
    [JsonPropertyName("fact_token")] public string FactToken { get; init; } = "subject_last";
    [JsonPropertyName("v_num_grad_steps")] public int VNumGradSteps { get; init; } = 20;
    [JsonPropertyName("v_lr")] public double VLr { get; init; } = 0.5;
    [JsonPropertyName("v_loss_layer")] public int VLossLayer { get; init; } = 47;
    [JsonPropertyName("v_weight_decay")] public double VWeightDecay { get; init; } = 0.5;
    [JsonPropertyName("clamp_norm_factor")] public double ClampNormFactor { get; init; } = 0.75;
    [JsonPropertyName("kl_factor")] public double KlFactor { get; init; } = 0.0625;
    [JsonPropertyName("nullspace_threshold")] public double NullspaceThreshold { get; init; } = 2e-2;
    [JsonPropertyName("L2")] public double L2 { get; init; } = 10;
    [JsonPropertyName("context_template_seed")] public int ContextTemplateSeed { get; init; } = 0;
    /// <summary>Tokens of each generated context prefix (as MEMIT's; 10 in the reference).</summary>
    [JsonPropertyName("context_template_length")] public int ContextTemplateLength { get; init; } = 10;

    /// <summary>Norm-Anchor Scaling (NAS): each solved value v* gets the anchor norm measured on the unedited model (<see cref="NormAnchor"/>). Off by default; written only when on.</summary>
    [JsonPropertyName("norm_anchor"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public bool NormAnchor { get; init; }
    /// <summary>NAS: requests sampled to measure the anchor (the reference's nas_restart; null: its default, 1,000).</summary>
    [JsonPropertyName("nas_restart"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] public int? NasRestart { get; init; }
    /// <summary>NAS: the anchor norm itself (ours; 0: measure it on the model before the first edit).</summary>
    [JsonPropertyName("nas_norm"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)] public double NasNorm { get; init; }

    /// <summary>Published values for GPT2-XL (hparams/AlphaEdit/gpt2-xl.json).</summary>
    public static AlphaEditHparams Gpt2Xl { get; } = new();

    public string ToJson() => JsonSerializer.Serialize(this, AlphaEditHparamsJson.Default.AlphaEditHparams);

    /// <summary>The defaults with the fields of json laid over them; unknown fields are refused.</summary>
    public static AlphaEditHparams FromJson(string json, string where = "hparams")
    {
        var merged = HparamsOverlay.Merge(new AlphaEditHparams().ToJson(), json, where, Editors.AlphaEditReferenceFields, HparamsOverlay.NasFields);
        return HparamsOverlay.Deserialize(merged, AlphaEditHparamsJson.Default.AlphaEditHparams, where);
    }

    internal MemitHparams ToMemit() => new()
    {
        Layers = Layers, VNumGradSteps = VNumGradSteps, VLr = VLr, VLossLayer = VLossLayer, VWeightDecay = VWeightDecay,
        ClampNormFactor = ClampNormFactor, KlFactor = KlFactor, ContextTemplateSeed = ContextTemplateSeed, ContextTemplateLength = ContextTemplateLength, FactToken = FactToken,
        NormAnchor = NormAnchor, NasRestart = NasRestart, NasNorm = NasNorm,
    };
}

[JsonSerializable(typeof(AlphaEditHparams))]
internal sealed partial class AlphaEditHparamsJson : JsonSerializerContext;
