using Palimpsest.Tensors;
using Palimpsest.Cuda.Interop;

namespace Palimpsest.Backends.Cuda;

// Launchers for kernels/attention.cu.
public sealed partial class CudaBackend : ISegmentAttention
{
    // q [T, H*hd], k, v [S, Hkv*hd] -> o [T, H*hd], probs [H, T, S] (optional)
    public void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs)
    {
        var (T, S) = CheckAttention(q, k, v, heads, kvHeads, headDim, probs, "Attention");
        SameLength(q, o, "Attention o");
        if (T == 0) return;
        LaunchAttention(q, k, v, o, probs, 0UL, T, S, heads, kvHeads, headDim);
    }

    // Kernel constants of attention_fwd_tiled (kernels/attention.cu).
    private const int AttQt = 16, AttKt = 32, AttThreads = 256, AttMaxHeadDim = 256;

    // Below this many query rows the tiled kernel has too few blocks (one per 16 rows and head) to
    // fill the GPU, and the one-row-per-block kernel is faster (a decode step: 23 against 8 µs on
    // an H200 at S = 64).
    private const int TiledMinRows = 16;

    /// <summary>
    /// Run the simple one-row-per-block attention kernel kept beside the tiled one, whatever the
    /// shape (tests and the GPU benchmark compare the two).
    /// </summary>
    public bool UseSimpleAttention { get; set; }

    // attention_fwd_tiled (or the simple attention_fwd) over q [T, H*hd], k, v [S, Hkv*hd]; first: optional [T] ints on the device
    private void LaunchAttention(Tensor q, Tensor k, Tensor v, Tensor o, Tensor? probs, ulong first, int T, int S, int heads, int kvHeads, int headDim)
    {
        float scale = (float)(1.0 / Math.Sqrt(headDim));
        ulong pq = F(q, "q").Ptr, pk = F(k, "k").Ptr, pv = F(v, "v").Ptr, po = Out(o, "o"), pp = probs is null ? 0UL : Out(probs, "probs");
        if (UseSimpleAttention || headDim > AttMaxHeadDim || T < TiledMinRows)
        {
            uint sharedSimple = SharedFor(_k.Attention, "attention_fwd", S);
            Bind();
            _k.Attention.Launch("attention_fwd", (uint)T, (uint)heads, Block, sharedSimple, Stream,
                pq, pk, pv, po, pp, first, T, S, heads, kvHeads, headDim, scale);
            return;
        }
        long bytes = ((long)AttQt * headDim + 2L * AttKt * (headDim + 1)) * sizeof(float);
        OptInShared(_k.Attention, "attention_fwd_tiled", bytes);
        Bind();
        _k.Attention.Launch("attention_fwd_tiled", (uint)((T + AttQt - 1) / AttQt), (uint)heads, AttThreads, (uint)bytes, Stream,
            pq, pk, pv, po, pp, first, T, S, heads, kvHeads, headDim, scale);
    }

    // Packed segments (ISegmentAttention): q [T, H*hd], k, v [T, Hkv*hd] -> o [T, H*hd], probs [H, T, T]
    // (optional, 0 outside each row's segment). One launch for every segment: the kernel reads each
    // row's first visible key from first [T].
    public void AttentionSegments(Tensor q, Tensor k, Tensor v, ReadOnlySpan<int> lengths, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs)
    {
        var (T, S) = CheckAttention(q, k, v, heads, kvHeads, headDim, probs, "AttentionSegments");
        if (S != T) throw new ArgumentException($"AttentionSegments: q {q} and k {k} must have the same rows (packed sequences)");
        SameLength(q, o, "AttentionSegments o");
        var firstRows = OpShapes.SegmentFirstRows(lengths, T);
        if (T == 0) return;
        using var first = UploadInts(firstRows);
        LaunchAttention(q, k, v, o, probs, first.Ptr, T, S, heads, kvHeads, headDim);
    }

    // dO [T, H*hd], q, k, v, probs [H, T, S] -> dq [T, H*hd], dk, dv [S, Hkv*hd] (overwritten)
    public void AttentionBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, int heads, int kvHeads, int headDim,
        Tensor dq, Tensor dk, Tensor dv) => AttentionBackwardCore(dO, q, k, v, probs, heads, kvHeads, headDim, dq, dk, dv, null);

    // Packed segments (ISegmentAttention): the backward above told where each segment starts and
    // ends, so the kernels skip the other segments' zero probs (a key's queries are its own
    // segment's rows only: most of the T rows when many short prompts are packed).
    public void AttentionSegmentsBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, ReadOnlySpan<int> lengths,
        int heads, int kvHeads, int headDim, Tensor dq, Tensor dk, Tensor dv)
    {
        if (k.Rows != q.Rows) throw new ArgumentException($"AttentionSegmentsBackward: q {q} and k {k} must have the same rows (packed sequences)");
        AttentionBackwardCore(dO, q, k, v, probs, heads, kvHeads, headDim, dq, dk, dv, OpShapes.SegmentFirstRows(lengths, q.Rows));
    }

    // first [T] (packed segments, or null): where each row's segment starts
    private void AttentionBackwardCore(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, int heads, int kvHeads, int headDim,
        Tensor dq, Tensor dk, Tensor dv, int[]? firstRows)
    {
        var (T, S) = CheckAttention(q, k, v, heads, kvHeads, headDim, probs, "AttentionBackward");
        SameLength(q, dO, "AttentionBackward dO");
        SameLength(q, dq, "AttentionBackward dq");
        SameLength(k, dk, "AttentionBackward dk");
        SameLength(v, dv, "AttentionBackward dv");
        if (T == 0) { Zero(dk); Zero(dv); return; }
        float scale = (float)(1.0 / Math.Sqrt(headDim));
        using var dS = New(DType.F32, [heads, T, S]);
        Scratch? first = null, lastq = null;
        if (firstRows is not null)
        {
            // the last row of each row's segment = the last query that sees a key in that row
            var last = new int[T];
            for (int t = T - 1; t >= 0; t--) last[t] = t == T - 1 || firstRows[t + 1] != firstRows[t] ? t : last[t + 1];
            first = UploadInts(firstRows);
            lastq = UploadInts(last);
        }
        try
        {
            uint shared = SharedFor(_k.Attention, "attention_bwd_q", S);
            Bind();
            _k.Attention.Launch("attention_bwd_q", (uint)T, (uint)heads, Block, shared, Stream,
                F(dO, "dO").Ptr, F(k, "k").Ptr, F(v, "v").Ptr, F(probs, "probs").Ptr, dS.Ptr, F(dq, "dq").Ptr,
                first?.Ptr ?? 0UL, T, S, heads, kvHeads, headDim, scale);
            LaunchN(_k.Attention, "attention_bwd_kv", (long)S * kvHeads * headDim, F(dO, "dO").Ptr, F(q, "q").Ptr, F(probs, "probs").Ptr, dS.Ptr,
                F(dk, "dk").Ptr, F(dv, "dv").Ptr, lastq?.Ptr ?? 0UL, T, S, heads, kvHeads, headDim, scale);
        }
        finally
        {
            first?.Dispose();
            lastq?.Dispose();
        }
    }

    private static (int T, int S) CheckAttention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor? probs, string op)
    {
        int T = q.Rows, S = k.Rows;
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0 || q.Cols != heads * headDim || k.Cols != kvHeads * headDim
            || v.Rows != S || v.Cols != k.Cols || S < T || (probs is not null && probs.Length != (long)heads * T * S))
            throw new ArgumentException($"{op}: q {q}, k {k}, v {v}, heads {heads}, kvHeads {kvHeads}, headDim {headDim}, probs {probs?.ToString() ?? "none"}");
        return (T, S);
    }

    // The score row (S floats) and the reduction scratch live in dynamic shared memory; past the
    // default 48 KiB the kernel must opt in.
    private uint SharedFor(CudaModule m, string kernel, int S)
    {
        long bytes = (S + (long)Block) * sizeof(float);
        OptInShared(m, kernel, bytes);
        return (uint)bytes;
    }

    private void OptInShared(CudaModule m, string kernel, long bytes)
    {
        if (bytes <= 48 * 1024) return;
        Bind();
        CuDriver.Check(CuDriver.cuFuncSetAttribute(m.Function(kernel), CuDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)bytes),
            $"cuFuncSetAttribute({kernel}, {bytes} bytes shared)");
    }
}
