using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

public sealed partial class SimdBackend
{
    // Rotary cos/sin [positions, rotaryDim/2] for the last (rotaryDim, theta) used; rebuilt when a
    // longer context or another geometry asks for it (one model per backend in practice).
    private float[] _ropeCos = [], _ropeSin = [];
    private int _ropeDim = -1, _ropePositions;
    private double _ropeTheta = double.NaN;

    // x [T, heads·headDim] in place
    public void Rope(Tensor x, int heads, int headDim, int rotaryDim, bool interleaved, double theta, int posOffset, bool inverse)
    {
        if (x.Cols != heads * headDim) throw new ArgumentException($"Rope: {x} is not [T, {heads}·{headDim}]");
        if (rotaryDim % 2 != 0 || rotaryDim > headDim || rotaryDim < 0) throw new ArgumentException($"Rope: rotaryDim {rotaryDim} must be even and <= {headDim}");
        if (posOffset < 0) throw new ArgumentOutOfRangeException(nameof(posOffset), $"Rope: negative position offset {posOffset}");
        if (rotaryDim == 0 || x.Rows == 0) return;
        int need = posOffset + x.Rows, half = rotaryDim / 2;
        if (_ropeDim != rotaryDim || _ropeTheta != theta || _ropePositions < need)
        {
            int positions = Math.Max(need, _ropeDim == rotaryDim && _ropeTheta == theta ? _ropePositions * 2 : need);
            (_ropeCos, _ropeSin) = RopeTable.Build(positions, rotaryDim, theta);
            _ropeDim = rotaryDim; _ropeTheta = theta; _ropePositions = positions;
        }
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

    private static void CheckAttention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o)
    {
        if (kvHeads <= 0 || heads % kvHeads != 0) throw new ArgumentException($"Attention: heads {heads} is not a multiple of kv heads {kvHeads}");
        if (q.Cols != heads * headDim || o.Cols != heads * headDim || o.Rows != q.Rows)
            throw new ArgumentException($"Attention: q {q} / o {o} are not [T, {heads}·{headDim}]");
        if (k.Cols != kvHeads * headDim || v.Cols != kvHeads * headDim || v.Rows != k.Rows)
            throw new ArgumentException($"Attention: k {k} / v {v} are not [S, {kvHeads}·{headDim}]");
        if (k.Rows < q.Rows) throw new ArgumentException($"Attention: {k.Rows} keys for {q.Rows} queries");
    }

    /// <summary>
    /// q [T, H·hd], k, v [S, Hkv·hd] -> o [T, H·hd]; probs [H, T, S] optional. Heads run in
    /// parallel, each as two GEMMs (scores = q_h·k_gᵀ, o_h = softmax(scores)·v_g) over strided
    /// views, so a decode step (T = 1) becomes two GEMVs per head.
    /// </summary>
    public void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs)
    {
        CheckAttention(q, k, v, heads, kvHeads, headDim, o);
        int T = q.Rows, S = k.Rows, group = heads / kvHeads, qc = heads * headDim, kc = kvHeads * headDim;
        long ts = (long)T * S;
        if (probs is not null && probs.Length != heads * ts) throw new ArgumentException($"Attention: probs {probs} is not [{heads}, {T}, {S}]");
        if (T == 0) return;
        // Scores go straight into probs when the caller keeps them, else into reused scratch.
        float[] P = probs is not null ? F(probs) : GrowArray(ref _scores, heads * ts);
        float[] Q = F(q), K = F(k), V = F(v), O = F(o);
        float scale = (float)(1.0 / Math.Sqrt(headDim));
        int threads = Environment.ProcessorCount;
        Parallel.For(0, heads, new ParallelOptions { MaxDegreeOfParallelism = threads }, h =>
        {
            int g = h / group;
            var ph = P.AsSpan((int)(h * ts), (int)ts);
            ReadOnlySpan<float> qh = Q.AsSpan(h * headDim), kg = K.AsSpan(g * headDim), vg = V.AsSpan(g * headDim);
            // scores [T, S] = q_h [T, hd] · k_g [S, hd]ᵀ (one thread: the heads are the parallelism)
            Gemm.Sgemm(false, true, T, S, headDim, qh, qc, kg, kc, ph, S, false, Gemm.DefaultKernel, 1);
            for (int t = 0; t < T; t++)
            {
                var row = ph.Slice(t * S, S);
                int seen = S - T + t + 1; // causal: keys 0..S-T+t
                CausalSoftmax(row, seen, scale);
            }
            // o_h [T, hd] = p [T, S] · v_g [S, hd]
            Gemm.Sgemm(false, false, T, headDim, S, ph, S, vg, kc, O.AsSpan(h * headDim), qc, false, Gemm.DefaultKernel, 1);
        });
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
        CheckAttention(q, k, v, heads, kvHeads, headDim, dO);
        SameLength(q, dq, "AttentionBackward"); SameLength(k, dk, "AttentionBackward"); SameLength(v, dv, "AttentionBackward");
        int T = q.Rows, S = k.Rows, group = heads / kvHeads, qc = heads * headDim, kc = kvHeads * headDim;
        long ts = (long)T * S;
        if (probs.Length != heads * ts) throw new ArgumentException($"AttentionBackward: probs {probs} is not [{heads}, {T}, {S}]");
        float[] G = F(dO), Q = F(q), K = F(k), V = F(v), P = F(probs), DQ = F(dq), DK = F(dk), DV = F(dv);
        Own(dk).Span.Clear(); Own(dv).Span.Clear();
        if (T == 0) { Own(dq).Span.Clear(); return; }
        float[] dS = GrowArray(ref _scores, kvHeads * ts);
        float scale = (float)(1.0 / Math.Sqrt(headDim));
        int threads = Environment.ProcessorCount;
        // With one kv group the parallelism moves inside the GEMMs.
        int inner = kvHeads >= threads ? 1 : threads;
        var kernel = Gemm.DefaultKernel;
        Parallel.For(0, kvHeads, new ParallelOptions { MaxDegreeOfParallelism = threads }, g =>
        {
            var ds = dS.AsSpan((int)(g * ts), (int)ts);
            ReadOnlySpan<float> kg = K.AsSpan(g * headDim), vg = V.AsSpan(g * headDim);
            Span<float> dkg = DK.AsSpan(g * headDim), dvg = DV.AsSpan(g * headDim);
            for (int h = g * group; h < (g + 1) * group; h++)
            {
                ReadOnlySpan<float> ph = P.AsSpan((int)(h * ts), (int)ts);
                ReadOnlySpan<float> gh = G.AsSpan(h * headDim), qh = Q.AsSpan(h * headDim);
                // dv_g [S, hd] += p_hᵀ [S, T] · dO_h [T, hd]
                Gemm.Sgemm(true, false, S, headDim, T, ph, S, gh, qc, dvg, kc, true, kernel, inner);
                // dp [T, S] = dO_h [T, hd] · v_g [S, hd]ᵀ
                Gemm.Sgemm(false, true, T, S, headDim, gh, qc, vg, kc, ds, S, false, kernel, inner);
                // ds = p ⊙ (dp − Σ_j p·dp) · scale  (softmax backward, row by row)
                for (int t = 0; t < T; t++)
                {
                    var pr = ph.Slice(t * S, S); var dr = ds.Slice(t * S, S);
                    float dot = TensorPrimitives.Dot(pr, dr);
                    TensorPrimitives.Subtract(dr, dot, dr);
                    TensorPrimitives.Multiply(dr, pr, dr);
                    TensorPrimitives.Multiply(dr, scale, dr);
                }
                // dq_h [T, hd] = ds [T, S] · k_g [S, hd]
                Gemm.Sgemm(false, false, T, headDim, S, ds, S, kg, kc, DQ.AsSpan(h * headDim), qc, false, kernel, inner);
                // dk_g [S, hd] += dsᵀ [S, T] · q_h [T, hd]
                Gemm.Sgemm(true, false, S, headDim, T, ds, S, qh, qc, dkg, kc, true, kernel, inner);
            }
        });
    }
}
