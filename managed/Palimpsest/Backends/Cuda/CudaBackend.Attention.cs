using Palimpsest.Tensors;
using Palimpsest.Cuda.Interop;

namespace Palimpsest.Backends.Cuda;

// Launchers for kernels/attention.cu.
public sealed partial class CudaBackend : ISegmentAttention
{
    // q [T, H*hd], k, v [S, Hkv*hd] -> o [T, H*hd], probs [H, T, S] (optional)
    public void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs, int window = 0)
    {
        var (T, S) = CheckAttention(q, k, v, heads, kvHeads, headDim, o, probs, "Attention");
        RefuseWindow(window, S, "Attention");
        if (T == 0) return;
        LaunchAttention(q, k, v, o, probs, 0UL, T, S, heads, kvHeads, headDim);
    }

    // attention_fwd_tiled's tile constants (kernels/attention.cu): ATT_QT query rows and ATT_KT keys
    // per tile, 32 * ATT_WARPS threads, head dimensions up to 32 * ATT_MAXC (KernelConstantTests).
    internal const int AttQt = 16, AttKt = 32, AttThreads = 256, AttMaxHeadDim = 256;
    // attention_softmax_rows / attention_softmax_bwd_rows: one warp per row, ATT_ROWS_PER_BLOCK rows per block.
    internal const int AttRowsPerBlock = 8;

    // Below this many query rows the tiled kernel has too little work to fill the GPU, and the
    // one-row-per-block kernel is faster (a decode step: 23 against 8 µs on an H200 at S = 64).
    private const int TiledMinRows = 16;

    // The GEMM path keeps the whole score matrix [H, T, S]; past this many bytes of it (when the
    // caller did not ask for probs, which are that matrix) the flash-style tiled kernel runs, as
    // it needs no memory beyond its tiles: long contexts.
    private const long GemmScoresMaxBytes = 256L << 20;

    /// <summary>
    /// Which forward runs: Auto picks (see <see cref="AttentionPath"/>); the others force one,
    /// so tests and the GPU benchmark compare every implementation on the same inputs.
    /// </summary>
    public AttentionPath AttentionPath { get; set; }

    private AttentionPath ChooseForward(int T, int S, int heads, int kvHeads, int headDim, bool withProbs)
    {
        bool gemmFits = heads == kvHeads && (withProbs || (long)heads * T * S * sizeof(float) <= GemmScoresMaxBytes);
        switch (AttentionPath)
        {
            case AttentionPath.SimpleKernel: return AttentionPath.SimpleKernel;
            case AttentionPath.TiledKernel: return headDim <= AttMaxHeadDim ? AttentionPath.TiledKernel : AttentionPath.SimpleKernel;
            case AttentionPath.Gemm:
                if (heads != kvHeads) throw new ArgumentException($"Attention: the GEMM path needs one kv head per head (heads {heads}, kvHeads {kvHeads})");
                return AttentionPath.Gemm;
            default:
                // cuBLAS whenever it applies, decoding included (T = 1 over 64 cached keys: 5.5 µs
                // against the simple kernel's 8.0 on an H100, run 6b)
                if (gemmFits) return AttentionPath.Gemm;
                if (T < TiledMinRows) return AttentionPath.SimpleKernel;
                return headDim <= AttMaxHeadDim ? AttentionPath.TiledKernel : AttentionPath.SimpleKernel;
        }
    }

    // q [T, H*hd], k, v [S, Hkv*hd] -> o [T, H*hd], probs [H, T, S] (optional); first: optional [T] ints on the device
    private void LaunchAttention(Tensor q, Tensor k, Tensor v, Tensor o, Tensor? probs, ulong first, int T, int S, int heads, int kvHeads, int headDim)
    {
        float scale = (float)(1.0 / Math.Sqrt(headDim));
        ulong pq = F(q, "q").Ptr, pk = F(k, "k").Ptr, pv = F(v, "v").Ptr, po = Out(o, "o"), pp = probs is null ? 0UL : Out(probs, "probs");
        switch (ChooseForward(T, S, heads, kvHeads, headDim, probs is not null))
        {
            case AttentionPath.SimpleKernel:
            {
                uint sharedSimple = SharedFor(nameof(AttentionKernels.attention_fwd), S);
                _k.Attention.attention_fwd(Grid((uint)T, (uint)heads, 1, Block, sharedSimple),
                    pq, pk, pv, po, pp, first, T, S, heads, kvHeads, headDim, scale);
                return;
            }
            case AttentionPath.TiledKernel:
            {
                long bytes = ((long)AttQt * headDim + 2L * AttKt * (headDim + 1)) * sizeof(float);
                OptInShared(nameof(AttentionKernels.attention_fwd_tiled), bytes);
                _k.Attention.attention_fwd_tiled(Grid((uint)((T + AttQt - 1) / AttQt), (uint)heads, 1, AttThreads, (uint)bytes),
                    pq, pk, pv, po, pp, first, T, S, heads, kvHeads, headDim, scale);
                return;
            }
            default:
            {
                using var scratch = probs is null ? New(DType.F32, [heads, T, S]) : null;
                ulong scores = probs is null ? scratch!.OverwritePtr : pp;
                GemmAttentionForward(pq, pk, pv, po, scores, first, T, S, heads, headDim, scale);
                return;
            }
        }
    }

    // The GEMM path, for heads == kvHeads (one cuBLAS matrix per head, at a fixed stride of hd
    // columns). Column-major views of the row-major tensors: q, k, v, o of head h are [hd, rows]
    // with leading dimension H*hd (from column h*hd); scores [H, T, S] are H matrices [S, T].
    //   scores_h = scale * k_h^T q_h        [S, T]   (Sgemm strided-batched, TF32 as the handle's math mode says)
    //   softmax of each row in place (masked keys and other segments -> 0)
    //   o_h = v_h . P_h                     [hd, T]
    // Causal masking wastes the upper half of both products; at the T this path serves (16 .. a
    // few thousand) cuBLAS's tensor of work is still far faster than the kernels' (T = 128:
    // 49.7 µs for the tiled kernel on an H200).
    private unsafe void GemmAttentionForward(ulong q, ulong k, ulong v, ulong o, ulong scores, ulong first, int T, int S, int H, int hd, float scale)
    {
        int ld = H * hd;
        long ts = (long)T * S;
        float zero = 0f, one = 1f;
        Bind();
        Cublas.Check(Cublas.cublasSgemmStridedBatched(_blas.Handle, Cublas.CUBLAS_OP_T, Cublas.CUBLAS_OP_N, S, T, hd,
            &scale, k, ld, hd, q, ld, hd, &zero, scores, S, ts, H), $"cublasSgemmStridedBatched(attention scores, H={H}, T={T}, S={S}, hd={hd})");
        _k.Attention.attention_softmax_rows(Grid((uint)(((long)H * T + AttRowsPerBlock - 1) / AttRowsPerBlock), 1, 1, 32 * AttRowsPerBlock),
            scores, first, T, S, H);
        Cublas.Check(Cublas.cublasSgemmStridedBatched(_blas.Handle, Cublas.CUBLAS_OP_N, Cublas.CUBLAS_OP_N, hd, T, S,
            &one, v, ld, hd, scores, S, ts, &zero, o, ld, hd, H), $"cublasSgemmStridedBatched(attention P.v, H={H}, T={T}, S={S}, hd={hd})");
    }

    // The GEMM backward (heads == kvHeads), in the forward's column-major views:
    //   dS_h = v_h^T dO_h                    [S, T]  (dP)
    //   dS = P * (dP - rowsum(P * dP)) in place
    //   dq_h = scale * k_h dS_h              [hd, T]
    //   dk_h = scale * q_h dS_h^T            [hd, S]
    //   dv_h = dO_h P_h^T                    [hd, S]
    // Masked and other-segment entries of P are 0, so dS is 0 there and packed segments need no
    // bounds: the products add zeros.
    private unsafe void GemmAttentionBackward(ulong dO, ulong q, ulong k, ulong v, ulong probs, ulong dS, ulong dq, ulong dk, ulong dv,
        int T, int S, int H, int hd, float scale)
    {
        int ld = H * hd;
        long ts = (long)T * S;
        float zero = 0f, one = 1f;
        Bind();
        Cublas.Check(Cublas.cublasSgemmStridedBatched(_blas.Handle, Cublas.CUBLAS_OP_T, Cublas.CUBLAS_OP_N, S, T, hd,
            &one, v, ld, hd, dO, ld, hd, &zero, dS, S, ts, H), $"cublasSgemmStridedBatched(attention dP, H={H}, T={T}, S={S}, hd={hd})");
        _k.Attention.attention_softmax_bwd_rows(Grid((uint)(((long)H * T + AttRowsPerBlock - 1) / AttRowsPerBlock), 1, 1, 32 * AttRowsPerBlock),
            probs, dS, T, S, H);
        Cublas.Check(Cublas.cublasSgemmStridedBatched(_blas.Handle, Cublas.CUBLAS_OP_N, Cublas.CUBLAS_OP_N, hd, T, S,
            &scale, k, ld, hd, dS, S, ts, &zero, dq, ld, hd, H), $"cublasSgemmStridedBatched(attention dq, H={H}, T={T}, S={S}, hd={hd})");
        Cublas.Check(Cublas.cublasSgemmStridedBatched(_blas.Handle, Cublas.CUBLAS_OP_N, Cublas.CUBLAS_OP_T, hd, S, T,
            &scale, q, ld, hd, dS, S, ts, &zero, dk, ld, hd, H), $"cublasSgemmStridedBatched(attention dk, H={H}, T={T}, S={S}, hd={hd})");
        Cublas.Check(Cublas.cublasSgemmStridedBatched(_blas.Handle, Cublas.CUBLAS_OP_N, Cublas.CUBLAS_OP_T, hd, S, T,
            &one, dO, ld, hd, probs, S, ts, &zero, dv, ld, hd, H), $"cublasSgemmStridedBatched(attention dv, H={H}, T={T}, S={S}, hd={hd})");
    }

    // Packed segments (ISegmentAttention): q [T, H*hd], k, v [T, Hkv*hd] -> o [T, H*hd], probs [H, T, T]
    // (optional, 0 outside each row's segment). One launch for every segment: the kernel reads each
    // row's first visible key from first [T].
    public void AttentionSegments(Tensor q, Tensor k, Tensor v, ReadOnlySpan<int> lengths, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs)
    {
        OpShapes.Packed(q, k, "AttentionSegments");
        var (T, S) = CheckAttention(q, k, v, heads, kvHeads, headDim, o, probs, "AttentionSegments");
        var firstRows = OpShapes.SegmentFirstRows(lengths, T);
        if (T == 0) return;
        using var first = UploadInts(firstRows);
        LaunchAttention(q, k, v, o, probs, first.Ptr, T, S, heads, kvHeads, headDim);
    }

    // dO [T, H*hd], q, k, v, probs [H, T, S] -> dq [T, H*hd], dk, dv [S, Hkv*hd] (overwritten)
    public void AttentionBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, int heads, int kvHeads, int headDim,
        Tensor dq, Tensor dk, Tensor dv, int window = 0)
    {
        RefuseWindow(window, k.Rows, "AttentionBackward");
        AttentionBackwardCore(dO, q, k, v, probs, heads, kvHeads, headDim, dq, dk, dv, null);
    }

    /// <summary>
    /// The kernels have no sliding window yet: a window that would mask a key (S keys &gt; window) is refused
    /// rather than ignored, in one line naming it; one that masks nothing (S ≤ window) is full attention.
    /// (The kernels' first [T] argument, each row's first visible key, could carry the window once checked on a GPU.)
    /// </summary>
    internal static void RefuseWindow(int window, int S, string op)
    {
        OpShapes.Window(window, op);
        if (window > 0 && S > window)
            throw new ArgumentException($"{op}: the CUDA backend does not implement sliding_window {window} (here {S} keys, more than the window); "
                + $"run this model on the CPU backend or keep its sequences within {window} tokens");
    }

    // Packed segments (ISegmentAttention): the backward above told where each segment starts and
    // ends, so the kernels skip the other segments' zero probs (a key's queries are its own
    // segment's rows only: most of the T rows when many short prompts are packed).
    public void AttentionSegmentsBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, ReadOnlySpan<int> lengths,
        int heads, int kvHeads, int headDim, Tensor dq, Tensor dk, Tensor dv)
    {
        OpShapes.Packed(q, k, "AttentionSegmentsBackward");
        AttentionBackwardCore(dO, q, k, v, probs, heads, kvHeads, headDim, dq, dk, dv, OpShapes.SegmentFirstRows(lengths, q.Rows));
    }

    // first [T] (packed segments, or null): where each row's segment starts
    private void AttentionBackwardCore(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, int heads, int kvHeads, int headDim,
        Tensor dq, Tensor dk, Tensor dv, int[]? firstRows)
    {
        var (T, S) = CheckAttention(q, k, v, heads, kvHeads, headDim, dO, probs, "AttentionBackward");
        SameLength(q, dq, "AttentionBackward dq");
        SameLength(k, dk, "AttentionBackward dk");
        SameLength(v, dv, "AttentionBackward dv");
        if (T == 0) { Zero(dk); Zero(dv); return; }
        float scale = (float)(1.0 / Math.Sqrt(headDim));
        using var dS = New(DType.F32, [heads, T, S]);
        bool gemm = AttentionPath switch
        {
            AttentionPath.SimpleKernel or AttentionPath.TiledKernel => false,
            AttentionPath.Gemm when heads != kvHeads => throw new ArgumentException($"AttentionBackward: the GEMM path needs one kv head per head (heads {heads}, kvHeads {kvHeads})"),
            _ => heads == kvHeads,
        };
        if (gemm)
        {
            GemmAttentionBackward(F(dO, "dO").Ptr, F(q, "q").Ptr, F(k, "k").Ptr, F(v, "v").Ptr, F(probs, "probs").Ptr, dS.OverwritePtr,
                Out(dq, "dq"), Out(dk, "dk"), Out(dv, "dv"), T, S, heads, headDim, scale);
            return;
        }
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
            uint shared = SharedFor(nameof(AttentionKernels.attention_bwd_q), S);
            _k.Attention.attention_bwd_q(Grid((uint)T, (uint)heads, 1, Block, shared),
                F(dO, "dO").Ptr, F(k, "k").Ptr, F(v, "v").Ptr, F(probs, "probs").Ptr, dS.Ptr, F(dq, "dq").Ptr,
                first?.Ptr ?? 0UL, T, S, heads, kvHeads, headDim, scale);
            _k.Attention.attention_bwd_kv(PerElement((long)S * kvHeads * headDim), F(dO, "dO").Ptr, F(q, "q").Ptr, F(probs, "probs").Ptr, dS.Ptr,
                F(dk, "dk").Ptr, F(dv, "dv").Ptr, lastq?.Ptr ?? 0UL, T, S, heads, kvHeads, headDim, scale);
        }
        finally
        {
            first?.Dispose();
            lastq?.Dispose();
        }
    }

    // q, o [T, H*hd], k, v [S, Hkv*hd], probs [H, T, S] (optional): the CPU backends' checks (OpShapes); o is dO in the backward
    private static (int T, int S) CheckAttention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs, string op)
    {
        OpShapes.Attention(q, k, v, heads, kvHeads, headDim, o);
        int T = q.Rows, S = k.Rows;
        OpShapes.AttentionProbs(probs, heads, T, S, op);
        return (T, S);
    }

    // The score row (S floats) and the reduction scratch live in dynamic shared memory; past the
    // default 48 KiB the kernel must opt in.
    private uint SharedFor(string entry, int S)
    {
        long bytes = (S + (long)Block) * sizeof(float);
        OptInShared(entry, bytes);
        return (uint)bytes;
    }

    // entry: one of attention.cu's
    private void OptInShared(string entry, long bytes)
    {
        if (bytes <= 48 * 1024) return;
        Bind();
        _k.Attention.AllowSharedBytes(entry, (int)bytes);
    }
}
