using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

/// <summary>Where an <see cref="Intervention"/> adds its vector.</summary>
public enum InterventionSite
{
    /// <summary>To block l's MLP output (before it joins the residual stream), as ROME's v* and the fixtures' gradient.</summary>
    MlpOutput,
    /// <summary>To the residual stream entering block l (l = 0: the embeddings), as causal tracing's corruption.</summary>
    ResidualIn,
    /// <summary>To block l's attention output (after the output projection, before it joins the residual or the MLP).</summary>
    AttnOutput,
    /// <summary>To block l's output (the residual stream leaving block l; hidden_states[l + 1] in transformers' convention, before the final norm).</summary>
    BlockOutput,
}

/// <summary>
/// Adds Delta [d] at one (layer, position) — or, with Replace, overwrites that row with Delta
/// (causal tracing's restoration). Delta lives on the model's backend. The backward supports
/// additive interventions only.
/// </summary>
public sealed record Intervention(int Layer, InterventionSite Site, int Position, Tensor Delta, bool Replace = false);

/// <summary>
/// Output of one forward. Owns its tensors (dispose to free them). Logits [T, V]; Hidden[i] [T, d];
/// MlpKeys[layer] [T, f].
/// </summary>
public sealed class ForwardResult : IDisposable
{
    /// <summary>Logits [T − LogitsFrom, V]. Throws for a forward run with StopAfterLayer.</summary>
    public Tensor Logits
    {
        get => _logits ?? throw new InvalidOperationException("this forward stopped early (StopAfterLayer) and computed no logits");
        init => _logits = value;
    }
    private readonly Tensor? _logits;
    public Tensor[]? Hidden { get; init; }
    /// <summary>With CaptureHidden: the residual stream after the last block, before the final norm [T, d].</summary>
    public Tensor? FinalResidual { get; init; }
    /// <summary>
    /// With StopAfterLayer = l and ReturnResidual: the residual stream leaving block l [T, d] (a copy:
    /// inference forwards reuse their scratch), to resume from with StartAtLayer = l + 1.
    /// </summary>
    public Tensor? Residual { get; init; }
    public IReadOnlyDictionary<int, Tensor> MlpKeys { get; init; } = new Dictionary<int, Tensor>();
    internal Tape? Tape { get; set; }
    public int[] Ids { get; init; } = [];
    public int PositionOffset { get; init; }
    /// <summary>First row (of the T tokens) that <see cref="Logits"/> covers.</summary>
    public int LogitsFrom { get; init; }
    /// <summary>The rows <see cref="Logits"/> covers when the forward ran with LogitRows (else null).</summary>
    public int[]? LogitRows { get; init; }
    /// <summary>The segment lengths when the forward ran with Segments (else null).</summary>
    public int[]? Segments { get; init; }

    /// <summary>Takes the logits back instead of freeing them (the transformer that made them reuses them); null: free.</summary>
    internal Action<Tensor>? RecycleLogits { get; init; }
    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        if (_logits is not null && RecycleLogits is not null) RecycleLogits(_logits);
        else _logits?.Dispose();
        if (Hidden is not null) foreach (var h in Hidden) h.Dispose();
        FinalResidual?.Dispose();
        Residual?.Dispose();
        foreach (var k in MlpKeys.Values) k.Dispose();
        Tape?.Dispose();
        Tape = null;
    }
}

/// <summary>Activations one block saved for the backward (shapes for T tokens).</summary>
internal sealed class BlockTape
{
    public Tensor X = null!;        // block input [T, d] (after any ResidualIn intervention)
    public Tensor AIn = null!;      // norm1(x) [T, d]
    public Tensor Mean1 = null!, Rstd1 = null!; // [T]
    public Tensor Q = null!;        // after rotary [T, H·hd] (before rotary with segments)
    public Tensor K = null!, V = null!; // after rotary [T, Hkv·hd] (before rotary with segments)
    public Tensor Probs = null!;    // [H, T, T] (with segments: only from a backend's packed attention, 0 outside each segment)
    // With segments attended one by one (n_s rows each): q_s [n_s, H·hd], k_s, v_s [n_s, Hkv·hd]
    // after rotary from position 0, and probs_s [H, n_s, n_s]; null otherwise.
    public Tensor[]? SegQ, SegK, SegV, SegProbs;
    public Tensor Att = null!;      // attention output before Wo [T, H·hd]
    public Tensor H = null!;        // x + attn_out (sequential blocks only) [T, d]
    public Tensor MIn = null!;      // MLP input [T, d]
    public Tensor? Mean2, Rstd2;    // [T] (absent when GPT-J shares norm1)
    public Tensor Up = null!;       // x·WUp + b [T, f]
    public Tensor? Gate;            // x·WGate [T, f] (SwiGLU)
    public Tensor Key = null!;      // activation = MLP key [T, f]
}

internal sealed class Tape : IDisposable
{
    public required BlockTape[] Blocks; // [L]; null below StartAtLayer
    /// <summary>The forward's StartAtLayer: no activations were kept below it (nor the embedding's).</summary>
    public int StartAtLayer;
    public Tensor XL = null!;     // residual after the last block [T, d]
    public Tensor XF = null!;     // final norm output [T, d]
    public Tensor XHead = null!;  // the rows of XF the head saw [R, d] (XF itself when R = T)
    public Tensor MeanF = null!, RstdF = null!;
    public required IReadOnlyList<Intervention> Interventions;
    /// <summary>Every intermediate of the forward (the result's own tensors are not in here).</summary>
    public required List<Tensor> Owned;

    public void Dispose()
    {
        foreach (var t in Owned) t.Dispose();
        Owned.Clear();
    }
}
