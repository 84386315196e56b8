using Palimpsest.Tensors;

namespace Palimpsest.Backends;

/// <summary>
/// The argument checks of IBackend ops, shared by the backends so that every backend refuses the
/// same calls with the same message.
/// </summary>
public static class OpShapes
{
    /// <summary>c [M, N] = op(a) [M, K] · op(b) [K, N]: returns (M, N, K) or throws naming all three shapes.</summary>
    public static (int M, int N, int K) MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c)
    {
        int m = c.Rows, n = c.Cols;
        int k = transA ? a.Rows : a.Cols;
        int am = transA ? a.Cols : a.Rows;
        int bk = transB ? b.Cols : b.Rows;
        int bn = transB ? b.Rows : b.Cols;
        if (am != m || bn != n || bk != k)
            throw new ArgumentException($"MatMul: op(a) is [{am}, {k}], op(b) is [{bk}, {bn}], c is [{m}, {n}]");
        return (m, n, k);
    }

    /// <summary>q, o [T, H·hd]; k, v [S, Hkv·hd] with S ≥ T and H a multiple of Hkv; kvRows ≥ 0: only k, v [0, kvRows) are read (S = kvRows).</summary>
    public static void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, int kvRows = -1)
    {
        if (kvRows > k.Rows || kvRows > v.Rows) throw new ArgumentException($"Attention: {kvRows} rows of k {k} / v {v}");
        int S = kvRows < 0 ? k.Rows : kvRows;
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0) throw new ArgumentException($"Attention: heads {heads} is not a positive multiple of kv heads {kvHeads}");
        if (q.Cols != heads * headDim || o.Cols != heads * headDim || o.Rows != q.Rows)
            throw new ArgumentException($"Attention: q {q} / o {o} are not [T, {heads}·{headDim}]");
        if (k.Cols != kvHeads * headDim || v.Cols != kvHeads * headDim || (kvRows < 0 && v.Rows != k.Rows))
            throw new ArgumentException($"Attention: k {k} / v {v} are not [S, {kvHeads}·{headDim}]");
        if (S < q.Rows) throw new ArgumentException($"Attention: {S} keys for {q.Rows} queries");
    }

    /// <summary>A sliding window of attention: 0 (none) or positive.</summary>
    public static void Window(int window, string op)
    {
        if (window < 0) throw new ArgumentOutOfRangeException(nameof(window), $"{op}: sliding window {window} must be positive (0: none)");
    }

    /// <summary>
    /// The keys query t of T sees among S (query t at position S − T + t): [lo, hi), causal, within the
    /// window when window &gt; 0 (keys j with i − window &lt; j ≤ i, transformers' sliding_window_overlay).
    /// </summary>
    public static (int Lo, int Hi) VisibleKeys(int t, int T, int S, int window)
    {
        int hi = S - T + t + 1;
        return (window > 0 ? Math.Max(0, hi - window) : 0, hi);
    }

    /// <summary>probs [H, T, S] of attention over S keys for T queries (null: not asked for).</summary>
    public static void AttentionProbs(Tensor? probs, int heads, int T, int S, string op)
    {
        if (probs is not null && probs.Length != (long)heads * T * S) throw new ArgumentException($"{op}: probs {probs} is not [{heads}, {T}, {S}]");
    }

    /// <summary>Packed sequences attend within themselves: q and k have the same rows.</summary>
    public static void Packed(Tensor q, Tensor k, string op)
    {
        if (k.Rows != q.Rows) throw new ArgumentException($"{op}: q {q} and k {k} must have the same rows (packed sequences)");
    }

    /// <summary>
    /// Packed segments of these lengths (each ≥ 1) covering T rows -> first [T]: the first row of the
    /// segment holding each row (the first key that row's query sees).
    /// </summary>
    public static int[] SegmentFirstRows(ReadOnlySpan<int> lengths, int T)
    {
        var first = new int[T];
        int at = 0;
        for (int s = 0; s < lengths.Length; s++)
        {
            if (lengths[s] < 1 || at + lengths[s] > T)
                throw new ArgumentException($"AttentionSegments: segment {s} of {lengths[s]} rows does not fit the {T} rows after row {at}");
            first.AsSpan(at, lengths[s]).Fill(at);
            at += lengths[s];
        }
        if (at != T) throw new ArgumentException($"AttentionSegments: segments cover {at} rows, the tensors have {T}");
        return first;
    }

    /// <summary>Rows [srcRow, srcRow + rows) of src onto [dstRow, ...) of dst: equal column counts, inside both.</summary>
    public static void CopyRows(Tensor src, int srcRow, Tensor dst, int dstRow, int rows)
    {
        if (dst.Cols != src.Cols) throw new ArgumentException($"CopyRows: column counts differ ({src} vs {dst})");
        if (srcRow < 0 || dstRow < 0 || rows < 0 || srcRow + rows > src.Rows || dstRow + rows > dst.Rows)
            throw new ArgumentOutOfRangeException(nameof(rows), $"CopyRows: rows [{srcRow},{srcRow + rows}) of {src} -> [{dstRow},{dstRow + rows}) of {dst}");
    }
}
