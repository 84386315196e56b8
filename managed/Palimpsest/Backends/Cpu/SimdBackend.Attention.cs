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
    /// views, so a decode step (T = 1) becomes two GEMVs per head.
    /// </summary>
    public void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs)
        => AttentionPrefix(q, k, v, k.Rows, heads, kvHeads, headDim, o, probs);

    /// <summary>
    /// <see cref="Attention"/> over k, v [0, kvRows) read in place: the storage is row-major, so the
    /// prefix is the start of the array and no RowPrefix view (an allocation per layer and step) is needed.
    /// </summary>
    public void AttentionPrefix(Tensor q, Tensor k, Tensor v, int kvRows, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs)
    {
        if (kvRows < 0) throw new ArgumentOutOfRangeException(nameof(kvRows), $"Attention: {kvRows} rows");
        Gate?.Pass();
        OpShapes.Attention(q, k, v, heads, kvHeads, headDim, o, kvRows);
        int T = q.Rows, S = kvRows;
        long ts = (long)T * S;
        OpShapes.AttentionProbs(probs, heads, T, S, "Attention");
        if (T == 0) return;
        var job = _attention;
        // Scores go straight into probs when the caller keeps them, else into reused scratch.
        job.P = probs is not null ? F(probs) : GrowArray(ref _scores, heads * ts);
        job.Q = F(q); job.K = F(k); job.V = F(v); job.O = F(o);
        job.T = T; job.S = S; job.HeadDim = headDim; job.Group = heads / kvHeads;
        job.Qc = heads * headDim; job.Kc = kvHeads * headDim;
        job.Scale = (float)(1.0 / Math.Sqrt(headDim));
        Gemm.ParallelFor(_workers, _workers.Threads, heads, job);
        job.Clear();
    }

    /// <summary>One head of <see cref="Attention"/>; reused from call to call so a decode step allocates nothing.</summary>
    private sealed class AttentionJob : IParallelJob
    {
        public float[] Q = [], K = [], V = [], O = [], P = [];
        public int T, S, HeadDim, Group, Qc, Kc;
        public float Scale;

        public void Run(int h)
        {
            int g = h / Group;
            long ts = (long)T * S;
            var ph = P.AsSpan((int)(h * ts), (int)ts);
            ReadOnlySpan<float> qh = Q.AsSpan(h * HeadDim), kg = K.AsSpan(g * HeadDim), vg = V.AsSpan(g * HeadDim);
            // scores [T, S] = q_h [T, hd] · k_g [S, hd]ᵀ (one thread: the heads are the parallelism)
            Gemm.Sgemm(false, true, T, S, HeadDim, qh, Qc, kg, Kc, ph, S, false, Gemm.DefaultKernel, 1);
            for (int t = 0; t < T; t++)
                CausalSoftmax(ph.Slice(t * S, S), S - T + t + 1, Scale); // causal: keys 0..S-T+t
            // o_h [T, hd] = p [T, S] · v_g [S, hd]
            Gemm.Sgemm(false, false, T, HeadDim, S, ph, S, vg, Kc, O.AsSpan(h * HeadDim), Qc, false, Gemm.DefaultKernel, 1);
        }

        /// <summary>Drops the references to the caller's arrays.</summary>
        public void Clear() { Q = K = V = O = P = []; }
    }

    /// <summary>row [S] of raw scores -> softmax(scale · row[0..seen)) with zeros after.</summary>
    private static void CausalSoftmax(Span<float> row, int seen, float scale)
    {
        var live = row[..seen];
        TensorPrimitives.Multiply(live, scale, live);
        float max = TensorPrimitives.Max(live);
        TensorPrimitives.Subtract(live, max, live);
        TensorPrimitives.Exp(live, live);
        float z = TensorPrimitives.Sum(live);
        TensorPrimitives.Multiply(live, 1f / z, live);
        row[seen..].Clear();
    }

    private static float[] GrowArray(ref float[] buf, long n)
    {
        Grow(ref buf, n);
        return buf;
    }

    /// <summary>
    /// Backward of <see cref="Attention"/> from the saved probs: dq [T, H·hd], dk, dv [S, Hkv·hd]
    /// overwritten. kv groups run in parallel (heads of one group add into the same dk/dv columns).
    /// </summary>
    public void AttentionBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, int heads, int kvHeads, int headDim,
        Tensor dq, Tensor dk, Tensor dv)
    {
        Gate?.Pass();
        OpShapes.Attention(q, k, v, heads, kvHeads, headDim, dO);
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
        public int T, S, HeadDim, Group, Qc, Kc, InnerThreads;
        public float Scale;
        public SimdWorkers? Workers;

        public void Run(int g)
        {
            long ts = (long)T * S;
            int hd = HeadDim, n = InnerThreads;
            var kernel = Gemm.DefaultKernel;
            var ds = DS.AsSpan((int)(g * ts), (int)ts);
            ReadOnlySpan<float> kg = K.AsSpan(g * hd), vg = V.AsSpan(g * hd);
            Span<float> dkg = DK.AsSpan(g * hd), dvg = DV.AsSpan(g * hd);
            for (int h = g * Group; h < (g + 1) * Group; h++)
            {
                ReadOnlySpan<float> ph = P.AsSpan((int)(h * ts), (int)ts);
                ReadOnlySpan<float> gh = G.AsSpan(h * hd), qh = Q.AsSpan(h * hd);
                // dv_g [S, hd] += p_hᵀ [S, T] · dO_h [T, hd]
                Gemm.Sgemm(true, false, S, hd, T, ph, S, gh, Qc, dvg, Kc, true, kernel, n, Workers);
                // dp [T, S] = dO_h [T, hd] · v_g [S, hd]ᵀ
                Gemm.Sgemm(false, true, T, S, hd, gh, Qc, vg, Kc, ds, S, false, kernel, n, Workers);
                // ds = p ⊙ (dp − Σ_j p·dp) · scale  (softmax backward, row by row)
                for (int t = 0; t < T; t++)
                {
                    var pr = ph.Slice(t * S, S); var dr = ds.Slice(t * S, S);
                    float dot = TensorPrimitives.Dot(pr, dr);
                    TensorPrimitives.Subtract(dr, dot, dr);
                    TensorPrimitives.Multiply(dr, pr, dr);
                    TensorPrimitives.Multiply(dr, Scale, dr);
                }
                // dq_h [T, hd] = ds [T, S] · k_g [S, hd]
                Gemm.Sgemm(false, false, T, hd, S, ds, S, kg, Kc, DQ.AsSpan(h * hd), Qc, false, kernel, n, Workers);
                // dk_g [S, hd] += dsᵀ [S, T] · q_h [T, hd]
                Gemm.Sgemm(true, false, S, hd, T, ds, S, qh, Qc, dkg, Kc, true, kernel, n, Workers);
            }
        }

        public void Clear() { G = Q = K = V = P = DQ = DK = DV = DS = []; Workers = null; }
    }
}
