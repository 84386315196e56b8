using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

/// <summary>What a forward should capture and change.</summary>
public sealed class ForwardOptions
{
    /// <summary>Return hidden states [L+1] x [T, d] in transformers' output_hidden_states convention.</summary>
    public bool CaptureHidden { get; init; }
    /// <summary>Layers whose MLP keys (input of the down-projection) [T, f] are returned.</summary>
    public IReadOnlyList<int>? CaptureKeysAt { get; init; }
    /// <summary>Vectors to add while running.</summary>
    public IReadOnlyList<Intervention>? Interventions { get; init; }
    /// <summary>
    /// Compute logits only for rows [LogitsFrom, T): Logits is then [T − LogitsFrom, V]. Generation and
    /// answer scoring need the last rows only, and the head is the largest matmul of a small model.
    /// A negative value counts from the end (−1: the last row only).
    /// </summary>
    public int LogitsFrom { get; init; }
    /// <summary>
    /// Compute logits only for these rows (strictly increasing, inside [0, T)): Logits is then
    /// [R, V], row i for token LogitRows[i]. Training on answer tokens needs a few scattered rows
    /// of a packed sequence. Cannot be combined with a non-zero LogitsFrom.
    /// </summary>
    public IReadOnlyList<int>? LogitRows { get; init; }
    /// <summary>
    /// Stop after this block (captures at or below it are still returned); the blocks above, the
    /// final norm and the head are skipped and the result has no logits. Key statistics need only
    /// the keys, and the head is the largest matmul of a small model. -1: run everything.
    /// </summary>
    public int StopAfterLayer { get; init; } = -1;
    /// <summary>
    /// With StopAfterLayer = l: the result's <see cref="ForwardResult.Residual"/> is a copy of the
    /// residual stream leaving block l [T, d] (after any BlockOutput intervention), which a later
    /// forward can resume from (<see cref="StartAtLayer"/> = l + 1).
    /// </summary>
    public bool ReturnResidual { get; init; }
    /// <summary>
    /// Resume at this block: the embedding and blocks 0..l−1 are skipped and block l starts from a
    /// copy of <see cref="StartResidual"/>. ROME's v* and MEMIT's z* optimise a vector added at one
    /// layer, and nothing below it depends on the vector, so every step can start there. Cannot be
    /// combined with a KV cache, CaptureHidden, keys or interventions below l, and the backward of
    /// such a forward has no weight gradients. 0: run from the embedding.
    /// </summary>
    public int StartAtLayer { get; init; }
    /// <summary>
    /// With StartAtLayer = l > 0: the residual stream entering block l [T, d] (e.g. the
    /// <see cref="ForwardResult.Residual"/> of a forward with StopAfterLayer = l − 1 and the same
    /// ids and Segments). Only read: the forward works on its own copy.
    /// </summary>
    public Tensor? StartResidual { get; init; }
    /// <summary>Keep every activation so that <see cref="Transformer.Backward"/> can run.</summary>
    public bool KeepForBackward { get; init; }
    /// <summary>
    /// Packed sequences: the T tokens are independent sequences of these lengths (each ≥ 1, summing
    /// to T) laid end to end. Each starts at position 0 and attends only within itself; everything
    /// row-wise runs once over all T rows. Rows (interventions, LogitRows, LogitsFrom, captures) stay
    /// rows of the whole [T, ·]. Cannot be combined with a KV cache. Null: one sequence.
    /// </summary>
    public IReadOnlyList<int>? Segments { get; init; }

    /// <summary>
    /// Checks these options for a forward of ids [T] through a model of config c, after the cache's
    /// tokens when there is a cache, and returns what the forward derives from them. Throws
    /// ArgumentException, naming the option, for ids outside the vocabulary, a sequence longer than
    /// the context (with segments: all of them together), or options that cannot go together;
    /// InvalidOperationException for a cache that a failed forward left incomplete.
    /// </summary>
    internal ForwardPlan Validate(ModelConfig c, ReadOnlySpan<int> ids, KvCache? cache)
    {
        cache?.ThrowIfIncomplete();
        int T = ids.Length, pos0 = cache?.Length ?? 0;
        if (T == 0) throw new ArgumentException("empty token sequence");
        if (pos0 + T > c.MaxPositions)
            throw new ArgumentException($"sequence of {pos0 + T} tokens is longer than the model's context ({c.MaxPositions})");
        if (cache is not null && pos0 + T > cache.Capacity)
            throw new ArgumentException($"KV cache holds {cache.Capacity} tokens; {pos0 + T} needed");
        if (StopAfterLayer >= c.Layers || StopAfterLayer < -1) throw new ArgumentException($"StopAfterLayer {StopAfterLayer} outside [-1, {c.Layers})");
        if (StopAfterLayer >= 0 && (KeepForBackward || CaptureHidden || cache is not null))
            throw new ArgumentException("StopAfterLayer runs without logits: it cannot be combined with KeepForBackward, CaptureHidden or a KV cache");
        if (ReturnResidual && StopAfterLayer < 0)
            throw new ArgumentException("ReturnResidual needs StopAfterLayer: it returns the residual stream leaving that block");
        int start = CheckStart(c, T, cache);
        if (KeepForBackward && Interventions is { } ivr && ivr.Any(i => i.Replace))
            throw new ArgumentException("backward through a replacing intervention is not supported");
        if (KeepForBackward && cache is not null && pos0 > 0)
            throw new ArgumentException("backward through a forward that continues a KV cache is not supported");
        var segs = Segments is null ? null : Segs.Check(Segments, T, cache);
        for (int t = 0; t < T; t++)
            if ((uint)ids[t] >= (uint)c.Vocab)
                throw new ArgumentException($"token id {ids[t]} at position {t} is outside the vocabulary [0, {c.Vocab})");
        CheckInterventions(c, T, start);
        if (StopAfterLayer >= 0) return new ForwardPlan(start, segs, 0, null); // no head: the logit rows are not read
        int from = LogitsFrom < 0 ? T + LogitsFrom : LogitsFrom;
        if (from < 0 || from >= T) throw new ArgumentException($"LogitsFrom {LogitsFrom} outside the {T} tokens");
        return new ForwardPlan(start, segs, from, LogitRows is null ? null : CheckRows(LogitRows, T, from));
    }

    // StartAtLayer in [0, L); above 0 it needs StartResidual [T, d], and nothing may need a block
    // below it (cache, hidden states, keys; StopAfterLayer). Interventions are checked with the others.
    private int CheckStart(ModelConfig c, int T, KvCache? cache)
    {
        int start = StartAtLayer;
        if (start < 0 || start >= c.Layers) throw new ArgumentException($"StartAtLayer {start} outside [0, {c.Layers})");
        if (start == 0)
        {
            if (StartResidual is not null) throw new ArgumentException("StartResidual is set but StartAtLayer is 0: the forward would start from the embedding and ignore it");
            return 0;
        }
        if (StartResidual is not { } sr)
            throw new ArgumentException($"StartAtLayer {start} needs StartResidual, the residual stream entering block {start} [{T}, {c.DModel}]");
        if (sr.Shape.Length != 2 || sr.Rows != T || sr.Cols != c.DModel)
            throw new ArgumentException($"StartResidual {sr} is not [{T}, {c.DModel}] (the tokens by d_model)");
        if (cache is not null) throw new ArgumentException($"StartAtLayer {start} cannot be combined with a KV cache: the skipped blocks would leave no keys and values in it");
        if (CaptureHidden) throw new ArgumentException($"StartAtLayer {start} cannot be combined with CaptureHidden: the hidden states below it are not computed");
        // a loop, not ks.Any(k => k < start): that lambda's closure over start would be allocated on every call
        if (CaptureKeysAt is { } ks && AnyBelow(ks, start))
            throw new ArgumentException($"CaptureKeysAt [{string.Join(", ", ks)}] asks for a layer below StartAtLayer {start}: that block does not run");
        if (StopAfterLayer >= 0 && StopAfterLayer < start)
            throw new ArgumentException($"StopAfterLayer {StopAfterLayer} is below StartAtLayer {start}: no block would run");
        return start;
    }

    private static bool AnyBelow(IReadOnlyList<int> layers, int start)
    {
        for (int i = 0; i < layers.Count; i++) if (layers[i] < start) return true;
        return false;
    }

    // Interventions: a layer that runs (in [start, L)), a position inside [0, T), a vector [d].
    private void CheckInterventions(ModelConfig c, int T, int start)
    {
        if (Interventions is not { } ivs) return;
        for (int i = 0; i < ivs.Count; i++) // indexed: foreach over the interface boxes an enumerator
        {
            var iv = ivs[i];
            if (iv.Layer < 0 || iv.Layer >= c.Layers) throw new ArgumentException($"intervention layer {iv.Layer} outside [0, {c.Layers})");
            if (iv.Layer < start) throw new ArgumentException($"intervention at layer {iv.Layer} is below StartAtLayer {start}: that block does not run");
            if (iv.Position < 0 || iv.Position >= T) throw new ArgumentException($"intervention position {iv.Position} outside [0, {T})");
            if (iv.Delta.Length != c.DModel) throw new ArgumentException($"intervention vector {iv.Delta} is not [{c.DModel}]");
        }
    }

    // LogitRows: strictly increasing rows inside [0, T); exclusive with LogitsFrom.
    private static int[] CheckRows(IReadOnlyList<int> rows, int T, int from)
    {
        if (from != 0) throw new ArgumentException("LogitRows and LogitsFrom cannot both be set");
        if (rows.Count == 0) throw new ArgumentException("LogitRows is empty");
        for (int i = 0; i < rows.Count; i++)
        {
            if (rows[i] < 0 || rows[i] >= T) throw new ArgumentException($"LogitRows[{i}] = {rows[i]} outside the {T} tokens");
            if (i > 0 && rows[i] <= rows[i - 1]) throw new ArgumentException($"LogitRows must be strictly increasing (row {rows[i]} after {rows[i - 1]})");
        }
        return rows.ToArray();
    }
}

/// <summary>
/// What a forward takes from its checked options (<see cref="ForwardOptions.Validate"/>): the first
/// block to run, the packed segments (null: one sequence), and the rows the head computes: from
/// LogitsFrom (counted from the start), or LogitRows when set.
/// </summary>
internal readonly record struct ForwardPlan(int Start, Segs? Segs, int LogitsFrom, int[]? LogitRows);
