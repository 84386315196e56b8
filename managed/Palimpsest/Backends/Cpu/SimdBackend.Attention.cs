using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

public sealed partial class SimdBackend
{
    // Rotary cos/sin [positions, rotaryDim/2] for the last (rotaryDim, frequencies) used; rebuilt when a
    // longer context or another geometry asks for it (one model per backend in practice).
    private float[] _ropeCos = [], _ropeSin = [];
    private int _ropeDim = -1, _ropePositions;
    private RopeFrequencies? _rope;

    /// <summary>Builds the table for positions [0, positions) now (it only grows; each position's angles do not depend on the table's size).</summary>
    public void ReserveRope(int positions, int rotaryDim, RopeFrequencies rope)
    {
        if (_ropeDim == rotaryDim && rope.Equals(_rope) && _ropePositions >= positions) return;
        int size = Math.Max(positions, _ropeDim == rotaryDim && rope.Equals(_rope) ? _ropePositions * 2 : positions);
        (_ropeCos, _ropeSin) = RopeTable.Build(size, rotaryDim, rope);
        _ropeDim = rotaryDim; _rope = rope; _ropePositions = size;
    }

    // x [T, heads·headDim] in place
    public void Rope(Tensor x, int heads, int headDim, int rotaryDim, bool interleaved, RopeFrequencies rope, int posOffset, bool inverse)
    {
        if (x.Cols != heads * headDim) throw new ArgumentException($"Rope: {x} is not [T, {heads}·{headDim}]");
        if (rotaryDim % 2 != 0 || rotaryDim > headDim || rotaryDim < 0) throw new ArgumentException($"Rope: rotaryDim {rotaryDim} must be even and <= {headDim}");
        if (posOffset < 0) throw new ArgumentOutOfRangeException(nameof(posOffset), $"Rope: negative position offset {posOffset}");
        if (rotaryDim == 0 || x.Rows == 0) return;
        int half = rotaryDim / 2;
        ReserveRope(posOffset + x.Rows, rotaryDim, rope);
        var X = F(x);
        int cols = x.Cols;
        for (int t = 0; t < x.Rows; t++)
        {
            int tab = (posOffset + t) * half;
            for (int h = 0; h < heads; h++)
            {
                int o = t * cols + h * headDim;
                int step = interleaved ? 2 : 1, partner = interleaved ? 1 : half;
                for (int i = 0; i < half; i++)
                {
                    float c = _ropeCos[tab + i], s = inverse ? -_ropeSin[tab + i] : _ropeSin[tab + i];
                    int i0 = o + i * step, i1 = i0 + partner;
                    float a = X[i0], b = X[i1];
                    X[i0] = a * c - b * s;
                    X[i1] = b * c + a * s;
                }
            }
        }
    }


    /// <summary>
    /// q [T, H·hd], k, v [S, Hkv·hd] -> o [T, H·hd]; probs [H, T, S] optional. Heads run in
    /// parallel, each as two GEMMs (scores = q_h·k_gᵀ, o_h = softmax(scores)·v_g) over strided
    /// views, so a decode step (T = 1) becomes two GEMVs per head. With a sliding window the queries
    /// go in blocks (<see cref="QueryBlock"/>), each block's GEMMs over only the keys its rows see.
    /// </summary>
    public void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs, int window = 0)
        => AttentionPrefix(q, k, v, k.Rows, heads, kvHeads, headDim, o, probs, window);

    /// <summary>
    /// <see cref="Attention"/> over k, v [0, kvRows) read in place: the storage is row-major, so the
    /// prefix is the start of the array and no RowPrefix view (an allocation per layer and step) is needed.
    /// With a window a decode step reads only the last <paramref name="window"/> rows.
    /// </summary>
    public void AttentionPrefix(Tensor q, Tensor k, Tensor v, int kvRows, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs, int window = 0)
    {
        if (kvRows < 0) throw new ArgumentOutOfRangeException(nameof(kvRows), $"Attention: {kvRows} rows");
        Gate?.Pass();
        OpShapes.Attention(q, k, v, heads, kvHeads, headDim, o, kvRows);
        OpShapes.Window(window, "Attention");
        int T = q.Rows, S = kvRows;
        OpShapes.AttentionProbs(probs, heads, T, S, "Attention");
        if (T == 0) return;
        var job = _attention;
        job.Window = window; job.Block = QueryBlock(T, S, window);
        // Scores go straight into probs [H, T, S] when the caller keeps them, else into reused scratch
        // of one query block per head: [block, keys a block sees] (T × S without a window).
        job.KeepProbs = probs is not null;
        job.Ld = probs is not null ? S : Math.Min(S, job.Block + (window > 0 ? window - 1 : S));
        job.HeadStride = probs is not null ? (long)T * S : (long)job.Block * job.Ld;
        job.P = probs is not null ? F(probs) : GrowArray(ref _scores, heads * job.HeadStride);
        job.Q = F(q); job.K = F(k); job.V = F(v); job.O = F(o);
        job.T = T; job.S = S; job.HeadDim = headDim; job.Group = heads / kvHeads;
        job.Qc = heads * headDim; job.Kc = kvHeads * headDim;
        job.Scale = (float)(1.0 / Math.Sqrt(headDim));
        Gemm.ParallelFor(_workers, _workers.Threads, heads, job);
        job.Clear();
    }

    /// <summary>
    /// Query rows per block of windowed attention: a block of B rows multiplies against the B + window − 1
    /// keys its rows see, so half the window keeps ≥ 2/3 of the products useful without making them
    /// skinny; without a window (or one that masks nothing), blocks of <see cref="CausalBlock"/> rows
    /// from 64 rows up, else all T rows as one block.
    /// </summary>
    private static int QueryBlock(int T, int S, int window) =>
        window <= 0 || window >= S ? (T >= 2 * CausalBlock ? CausalBlock : T) : Math.Min(T, Math.Clamp(window / 2, 1, 256));

    /// <summary>
    /// Query rows per block of causal attention without a window: block b's rows see only the keys up
    /// to its last row, so a 128-token prefill multiplies 320 of the 512 key blocks a single block would
    /// (the masked scores were computed and then zeroed). Masked keys add exact zeros, so the
    /// outputs are the single block's.
    /// </summary>
    private const int CausalBlock = 32;

    /// <summary>Keys [lo, hi) that some query of rows [t0, t1) sees (the visible keys rise with t).</summary>
    private static (int Lo, int Hi) BlockKeys(int t0, int t1, int T, int S, int window) =>
        (OpShapes.VisibleKeys(t0, T, S, window).Lo, OpShapes.VisibleKeys(t1 - 1, T, S, window).Hi);

    /// <summary>One head of <see cref="Attention"/>; reused from call to call so a decode step allocates nothing.</summary>
    private sealed class AttentionJob : IParallelJob
    {
        public float[] Q = [], K = [], V = [], O = [], P = [];
        public int T, S, HeadDim, Group, Qc, Kc, Window, Block, Ld;
        public long HeadStride;
        public bool KeepProbs;
        public float Scale;

        public void Run(int h)
        {
            int g = h / Group, hd = HeadDim;
            for (int t0 = 0; t0 < T; t0 += Block)
            {
                int t1 = Math.Min(T, t0 + Block), m = t1 - t0;
                var (klo, khi) = BlockKeys(t0, t1, T, S, Window);
                int n = khi - klo;
                // the block's scores [m, n]: in probs at rows t0.., columns klo.. (ld S), or at the start of the head's scratch
                int at = (int)(h * HeadStride + (KeepProbs ? (long)t0 * S + klo : 0));
                var sc = P.AsSpan(at, (m - 1) * Ld + n);
                // scores = q_h [m, hd] · k_g [n, hd]ᵀ (one thread: the heads are the parallelism)
                Gemm.Sgemm(false, true, m, n, hd, Q.AsSpan(t0 * Qc + h * hd), Qc, K.AsSpan(klo * Kc + g * hd), Kc, sc, Ld, false, Gemm.DefaultKernel, 1);
                for (int t = t0; t < t1; t++)
                {
                    var (lo, hi) = OpShapes.VisibleKeys(t, T, S, Window);
                    var row = sc.Slice((t - t0) * Ld, n);
                    WindowSoftmax(row, lo - klo, hi - klo, Scale);
                    if (KeepProbs) // the probs outside the block's keys are 0 too
                    {
                        P.AsSpan((int)(h * HeadStride + (long)t * S), klo).Clear();
                        P.AsSpan((int)(h * HeadStride + (long)t * S + khi), S - khi).Clear();
                    }
                }
                // o_h [m, hd] = p [m, n] · v_g [n, hd]
                Gemm.Sgemm(false, false, m, hd, n, sc, Ld, V.AsSpan(klo * Kc + g * hd), Kc, O.AsSpan(t0 * Qc + h * hd), Qc, false, Gemm.DefaultKernel, 1);
            }
        }

        /// <summary>Drops the references to the caller's arrays.</summary>
        public void Clear() { Q = K = V = O = P = []; }
    }

    /// <summary>row [n] of raw scores -> softmax(scale · row[lo..hi)) with zeros elsewhere.</summary>
    private static void WindowSoftmax(Span<float> row, int lo, int hi, float scale)
    {
        var live = row[lo..hi];
        TensorPrimitives.Multiply(live, scale, live);
        float max = TensorPrimitives.Max(live);
        TensorPrimitives.Subtract(live, max, live);
        TensorPrimitives.Exp(live, live);
        float z = TensorPrimitives.Sum(live);
        TensorPrimitives.Multiply(live, 1f / z, live);
        row[..lo].Clear();
        row[hi..].Clear();
    }

    private static float[] GrowArray(ref float[] buf, long n)
    {
        Grow(ref buf, n);
        return buf;
    }

    /// <summary>
    /// Backward of <see cref="Attention"/> from the saved probs: dq [T, H·hd], dk, dv [S, Hkv·hd]
    /// overwritten. kv groups run in parallel (heads of one group add into the same dk/dv columns);
    /// with a window, query block by query block over the keys each block sees, as in the forward.
    /// </summary>
    public void AttentionBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, int heads, int kvHeads, int headDim,
        Tensor dq, Tensor dk, Tensor dv, int window = 0)
    {
        Gate?.Pass();
        OpShapes.Attention(q, k, v, heads, kvHeads, headDim, dO);
        OpShapes.Window(window, "AttentionBackward");
        SameLength(q, dq, "AttentionBackward"); SameLength(k, dk, "AttentionBackward"); SameLength(v, dv, "AttentionBackward");
        int T = q.Rows, S = k.Rows;
        long ts = (long)T * S;
        OpShapes.AttentionProbs(probs, heads, T, S, "AttentionBackward");
        Own(dk).Span.Clear(); Own(dv).Span.Clear();
        if (T == 0) { Own(dq).Span.Clear(); return; }
        var job = _attentionBackward;
        job.G = F(dO); job.Q = F(q); job.K = F(k); job.V = F(v); job.P = F(probs);
        job.DQ = F(dq); job.DK = F(dk); job.DV = F(dv);
        job.DS = GrowArray(ref _scores, kvHeads * ts);
        job.T = T; job.S = S; job.HeadDim = headDim; job.Group = heads / kvHeads;
        job.Qc = heads * headDim; job.Kc = kvHeads * headDim;
        job.Window = window; job.Block = QueryBlock(T, S, window);
        job.Scale = (float)(1.0 / Math.Sqrt(headDim));
        // With fewer kv groups than threads the parallelism moves inside the GEMMs.
        job.Workers = _workers;
        job.InnerThreads = kvHeads >= _workers.Threads ? 1 : _workers.Threads;
        Gemm.ParallelFor(_workers, _workers.Threads, kvHeads, job);
        job.Clear();
    }

    /// <summary>One kv group of <see cref="AttentionBackward"/> (its heads add into the same dk/dv columns).</summary>
    private sealed class AttentionBackwardJob : IParallelJob
    {
        public float[] G = [], Q = [], K = [], V = [], P = [], DQ = [], DK = [], DV = [], DS = [];
        public int T, S, HeadDim, Group, Qc, Kc, InnerThreads, Window, Block;
        public float Scale;
        public SimdWorkers? Workers;

        public void Run(int g)
        {
            long ts = (long)T * S;
            int hd = HeadDim, n = InnerThreads;
            var kernel = Gemm.DefaultKernel;
            for (int h = g * Group; h < (g + 1) * Group; h++)
            {
                for (int t0 = 0; t0 < T; t0 += Block)
                {
                    int t1 = Math.Min(T, t0 + Block), m = t1 - t0;
                    var (klo, khi) = BlockKeys(t0, t1, T, S, Window);
                    int nk = khi - klo, at = (int)(t0 * (long)S + klo), len = (m - 1) * S + nk;
                    // the block's [m, nk] of p_h and ds (ld S); the probs outside it are 0
                    ReadOnlySpan<float> pb = P.AsSpan((int)(h * ts) + at, len);
                    var ds = DS.AsSpan((int)(g * ts) + at, len);
                    ReadOnlySpan<float> gb = G.AsSpan(t0 * Qc + h * hd), qb = Q.AsSpan(t0 * Qc + h * hd);
                    ReadOnlySpan<float> kb = K.AsSpan(klo * Kc + g * hd), vb = V.AsSpan(klo * Kc + g * hd);
                    Span<float> dkb = DK.AsSpan(klo * Kc + g * hd), dvb = DV.AsSpan(klo * Kc + g * hd);
                    // dv_g [nk, hd] += p_hᵀ [nk, m] · dO_h [m, hd]
                    Gemm.Sgemm(true, false, nk, hd, m, pb, S, gb, Qc, dvb, Kc, true, kernel, n, Workers);
                    // dp [m, nk] = dO_h [m, hd] · v_g [nk, hd]ᵀ
                    Gemm.Sgemm(false, true, m, nk, hd, gb, Qc, vb, Kc, ds, S, false, kernel, n, Workers);
                    // ds = p ⊙ (dp − Σ_j p·dp) · scale  (softmax backward, row by row)
                    for (int r = 0; r < m; r++)
                    {
                        var pr = pb.Slice(r * S, nk); var dr = ds.Slice(r * S, nk);
                        float dot = TensorPrimitives.Dot(pr, dr);
                        TensorPrimitives.Subtract(dr, dot, dr);
                        TensorPrimitives.Multiply(dr, pr, dr);
                        TensorPrimitives.Multiply(dr, Scale, dr);
                    }
                    // dq_h [m, hd] = ds [m, nk] · k_g [nk, hd]
                    Gemm.Sgemm(false, false, m, hd, nk, ds, S, kb, Kc, DQ.AsSpan(t0 * Qc + h * hd), Qc, false, kernel, n, Workers);
                    // dk_g [nk, hd] += dsᵀ [nk, m] · q_h [m, hd]
                    Gemm.Sgemm(true, false, nk, hd, m, ds, S, qb, Qc, dkb, Kc, true, kernel, n, Workers);
                }
            }
        }

        public void Clear() { G = Q = K = V = P = DQ = DK = DV = DS = []; Workers = null; }
    }
}
