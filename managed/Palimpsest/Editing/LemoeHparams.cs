using System.Text.Json;
using System.Text.Json.Serialization;

namespace Palimpsest.Editing;

/// <summary>
/// LEMoE's settings (Wang &amp; Li, EMNLP 2024; the paper has no public code, so the names are ours
/// and the defaults the paper's where it gives them: AdamW, lr 2e-4, top-1 routing).
/// </summary>
public sealed record LemoeHparams
{
    /// <summary>The block whose MLP gets the adaptor (the paper: one FFN layer).</summary>
    [JsonPropertyName("layer")] public int Layer { get; init; }
    /// <summary>Hidden width of each expert f_t(k) = B_t SiLU(A_t k): A_t [rank, d_ff], B_t [d, rank].</summary>
    [JsonPropertyName("expert_rank")] public int ExpertRank { get; init; } = 64;
    /// <summary>Router v = W_up SiLU(W_down e): W_down [router_hidden, d].</summary>
    [JsonPropertyName("router_hidden")] public int RouterHidden { get; init; } = 64;
    /// <summary>Length of v and of each expert's key: W_up [key_dim, router_hidden].</summary>
    [JsonPropertyName("key_dim")] public int KeyDim { get; init; } = 64;
    [JsonPropertyName("lr")] public double Lr { get; init; } = 2e-4;
    [JsonPropertyName("weight_decay")] public double WeightDecay { get; init; } = 0.01;
    /// <summary>At most this many AdamW steps per edit batch.</summary>
    [JsonPropertyName("steps")] public int Steps { get; init; } = 100;
    /// <summary>Stop once the batch's mean target NLL is below this.</summary>
    [JsonPropertyName("early_stop_loss")] public double EarlyStopLoss { get; init; } = 0.05;
    /// <summary>
    /// Weight of the routing loss: cross-entropy of the router's softmax against the new expert on
    /// the rows that predict a target token (ours: it teaches the new key its anchor).
    /// </summary>
    [JsonPropertyName("routing_loss_weight")] public double RoutingLossWeight { get; init; } = 1.0;
    /// <summary>Seed of the new experts' and the router's initial weights.</summary>
    [JsonPropertyName("seed")] public int Seed { get; init; }
    /// <summary>Order the requests by K-means over their routing inputs, batches within clusters (the paper's editing-order planning).</summary>
    [JsonPropertyName("plan_order")] public bool PlanOrder { get; init; } = true;

    public string ToJson() => JsonSerializer.Serialize(this, LemoeHparamsJson.Default.LemoeHparams);

    /// <summary>The defaults with the fields of json laid over them; unknown fields are refused.</summary>
    public static LemoeHparams FromJson(string json, string where = "hparams")
    {
        var merged = HparamsOverlay.Merge(new LemoeHparams().ToJson(), json, where);
        LemoeHparams h;
        h = HparamsOverlay.Deserialize(merged, LemoeHparamsJson.Default.LemoeHparams, where);
        h.Validate(where);
        return h;
    }

    internal void Validate(string where = "hparams")
    {
        if (ExpertRank < 1 || RouterHidden < 1 || KeyDim < 1) throw new ArgumentException($"{where}: expert_rank, router_hidden and key_dim must be at least 1");
        if (Steps < 1) throw new ArgumentException($"{where}: steps must be at least 1 (got {Steps})");
        if (!(Lr > 0)) throw new ArgumentException($"{where}: lr must be positive (got {Lr})");
    }
}

[JsonSerializable(typeof(LemoeHparams))]
internal sealed partial class LemoeHparamsJson : JsonSerializerContext;
