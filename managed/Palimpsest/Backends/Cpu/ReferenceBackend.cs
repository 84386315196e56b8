using MathNet.Numerics;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>A float64 tensor in host memory: the reference backend's storage.</summary>
public sealed class F64Tensor : Tensor
{
    public F64Tensor(double[] data, int[] shape) : base(shape, DType.F64)
    {
        // A row-prefix view shares a longer array; element i of the tensor is Data[i] for i < Length.
        if (data.LongLength < Length) throw new ArgumentException($"data length {data.LongLength} is too short for shape {ShapeString}");
        Data = data;
    }

    /// <summary>Storage; may be longer than <see cref="Tensor.Length"/> for a row-prefix view.</summary>
    public double[] Data { get; }
}

/// <summary>
/// The float64 reference: plain loops that are obviously right, no blocking, no threads, no SIMD.
/// It is the oracle every other backend is compared with, op by op, and it matches transformers'
/// float64 outputs to ~1e-12. Not fast; not meant to be. Nor allocation-free: a decode step
/// allocates here (attention over a KV cache goes through RowPrefix views, ops allocate scratch),
/// unlike on <see cref="SimdBackend"/>.
/// </summary>
public sealed class ReferenceBackend : IBackend, ISegmentAttention, ISiblingBackend
{
    public string Name => "cpu-f64";
    public DType Compute => DType.F64;
    /// <summary>Attention masks by each query's visible keys (OpShapes.VisibleKeys), whatever their number.</summary>
    public bool SlidingWindowAttention => true;

    private static double[] D(Tensor t) => t is F64Tensor f ? f.Data
        : throw new ArgumentException($"tensor {t} does not belong to the {nameof(ReferenceBackend)}");

    private static void SameLength(Tensor a, Tensor b, string what)
    {
        if (a.Length != b.Length) throw new ArgumentException($"{what}: lengths differ ({a} vs {b})");
    }

    // ---------------- memory ----------------

    public Tensor Zeros(params int[] shape) => new F64Tensor(new double[Count(shape)], shape);

    public Tensor FromHost(ReadOnlySpan<double> src, params int[] shape)
    {
        var t = Zeros(shape);
        if (src.Length != t.Length) throw new ArgumentException($"host data has {src.Length} values, shape {t.ShapeString} needs {t.Length}");
        src.CopyTo(D(t));
        return t;
    }

    public Tensor FromHost(ReadOnlySpan<float> src, params int[] shape)
    {
        var t = Zeros(shape);
        if (src.Length != t.Length) throw new ArgumentException($"host data has {src.Length} values, shape {t.ShapeString} needs {t.Length}");
        var d = D(t);
        for (int i = 0; i < src.Length; i++) d[i] = src[i];
        return t;
    }

    public Tensor Weight(ReadOnlySpan<float> src, params int[] shape) => FromHost(src, shape);
    public Tensor Weight(ReadOnlySpan<double> src, params int[] shape) => FromHost(src, shape);

    public void ToHost(Tensor t, Span<double> dst)
    {
        if (dst.Length != t.Length) throw new ArgumentException($"destination has {dst.Length} values, tensor {t} has {t.Length}");
        D(t).AsSpan(0, dst.Length).CopyTo(dst);
    }

    public void ToHost(Tensor t, Span<float> dst)
    {
        if (dst.Length != t.Length) throw new ArgumentException($"destination has {dst.Length} values, tensor {t} has {t.Length}");
        var d = D(t);
        for (int i = 0; i < dst.Length; i++) dst[i] = (float)d[i];
    }

    public void Upload(Tensor t, ReadOnlySpan<double> src)
    {
        if (src.Length != t.Length) throw new ArgumentException($"source has {src.Length} values, tensor {t} has {t.Length}");
        src.CopyTo(D(t));
    }

    public void Zero(Tensor t) => Array.Clear(D(t), 0, (int)t.Length);

    public Tensor RowPrefix(Tensor t, int rows)
    {
        if (rows < 0 || rows > t.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"RowPrefix: {rows} rows of {t}");
        return new F64Tensor(D(t), [rows, t.Cols]);
    }

    public void CopyRows(Tensor src, int srcRow, Tensor dst, int dstRow, int rows)
    {
        OpShapes.CopyRows(src, srcRow, dst, dstRow, rows);
        int c = src.Cols;
        Array.Copy(D(src), (long)srcRow * c, D(dst), (long)dstRow * c, (long)rows * c);
    }

    public void Dispose() { }

    /// <summary>The reference keeps no state between calls, but a sibling is still its own instance.</summary>
    public IBackend CreateSibling(int threads) => new ReferenceBackend();

    private static long Count(int[] shape) { long n = 1; foreach (var s in shape) n *= s; return n; }

    // ---------------- linear algebra ----------------

    // c [M, N] (+)= op(a) [M, K] · op(b) [K, N]
    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, bool accumulate = false)
    {
        var (m, n, k) = OpShapes.MatMul(a, transA, b, transB, c);
        var A = D(a); var B = D(b); var C = D(c);
        int lda = a.Cols, ldb = b.Cols;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++)
                {
                    double x = transA ? A[(long)p * lda + i] : A[(long)i * lda + p];
                    double y = transB ? B[(long)j * ldb + p] : B[(long)p * ldb + j];
                    s += x * y;
                }
                C[(long)i * n + j] = accumulate ? C[(long)i * n + j] + s : s;
            }
    }

    // x [M, N] += bias [N]
    public void AddBias(Tensor x, Tensor bias)
    {
        if (bias.Length != x.Cols) throw new ArgumentException($"AddBias: bias {bias} does not match {x}");
        var X = D(x); var b = D(bias); int n = x.Cols;
        for (long i = 0; i < x.Length; i++) X[i] += b[i % n];
    }

    // dst [N] (+)= Σ_m x [m, :]
    public void SumRows(Tensor x, Tensor dst, bool accumulate)
    {
        if (dst.Length != x.Cols) throw new ArgumentException($"SumRows: {dst} does not match {x}");
        var X = D(x); var o = D(dst); int n = x.Cols;
        if (!accumulate) Array.Clear(o, 0, n);
        for (int r = 0; r < x.Rows; r++)
            for (int j = 0; j < n; j++) o[j] += X[(long)r * n + j];
    }

    public void Add(Tensor a, Tensor b, Tensor dst)
    {
        SameLength(a, b, "Add"); SameLength(a, dst, "Add");
        var A = D(a); var B = D(b); var O = D(dst);
        for (long i = 0; i < dst.Length; i++) O[i] = A[i] + B[i];
    }

    public void Axpy(double alpha, Tensor src, Tensor dst)
    {
        SameLength(src, dst, "Axpy");
        var S = D(src); var O = D(dst);
        for (long i = 0; i < dst.Length; i++) O[i] += alpha * S[i];
    }

    // x [T, d]: x[row] += v [d]
    public void AddToRow(Tensor x, int row, Tensor v)
    {
        int d = x.Cols;
        if (v.Length != d) throw new ArgumentException($"AddToRow: vector {v} does not match row of {x}");
        if (row < 0 || row >= x.Rows) throw new ArgumentOutOfRangeException(nameof(row), $"AddToRow: row {row} outside [0, {x.Rows})");
        var X = D(x); var V = D(v);
        for (int j = 0; j < d; j++) X[(long)row * d + j] += V[j];
    }

    // dst [d] (+)= x [T, d] row
    public void GetRow(Tensor x, int row, Tensor dst, bool accumulate)
    {
        int d = x.Cols;
        if (dst.Length != d) throw new ArgumentException($"GetRow: {dst} does not match row of {x}");
        if (row < 0 || row >= x.Rows) throw new ArgumentOutOfRangeException(nameof(row), $"GetRow: row {row} outside [0, {x.Rows})");
        var X = D(x); var O = D(dst);
        for (int j = 0; j < d; j++) O[j] = (accumulate ? O[j] : 0) + X[(long)row * d + j];
    }

    // ---------------- embeddings ----------------

    // dst [T, d] = wte [V, d][ids] (+ wpe [P, d][posOffset + t])
    public void Embed(ReadOnlySpan<int> ids, Tensor wte, Tensor? wpe, int posOffset, Tensor dst)
    {
        int d = wte.Cols, vocab = wte.Rows;
        if (dst.Rows != ids.Length || dst.Cols != d) throw new ArgumentException($"Embed: dst {dst} is not [{ids.Length}, {d}]");
        var E = D(wte); var O = D(dst); var P = wpe is null ? null : D(wpe);
        for (int t = 0; t < ids.Length; t++)
        {
            int id = ids[t];
            if ((uint)id >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} at position {t} is outside the vocabulary [0, {vocab})");
            int pos = posOffset + t;
            if (P is not null && (uint)pos >= (uint)wpe!.Rows) throw new ArgumentOutOfRangeException(nameof(posOffset), $"position {pos} is outside the context [0, {wpe.Rows})");
            for (int j = 0; j < d; j++)
                O[(long)t * d + j] = E[(long)id * d + j] + (P is null ? 0 : P[(long)pos * d + j]);
        }
    }

    public void EmbedBackward(ReadOnlySpan<int> ids, Tensor dy, Tensor dwte, Tensor? dwpe, int posOffset)
    {
        int d = dwte.Cols;
        var G = D(dy); var E = D(dwte); var P = dwpe is null ? null : D(dwpe);
        for (int t = 0; t < ids.Length; t++)
            for (int j = 0; j < d; j++)
            {
                E[(long)ids[t] * d + j] += G[(long)t * d + j];
                if (P is not null) P[(long)(posOffset + t) * d + j] += G[(long)t * d + j];
            }
    }

    // ---------------- norms ----------------

    public void LayerNorm(Tensor x, Tensor g, Tensor? b, double eps, Tensor y, Tensor mean, Tensor rstd)
    {
        int d = x.Cols, T = x.Rows;
        var X = D(x); var G = D(g); var B = b is null ? null : D(b); var Y = D(y); var M = D(mean); var R = D(rstd);
        for (int t = 0; t < T; t++)
        {
            long o = (long)t * d;
            double mu = 0; for (int j = 0; j < d; j++) mu += X[o + j]; mu /= d;
            double v = 0; for (int j = 0; j < d; j++) { double c = X[o + j] - mu; v += c * c; } v /= d;
            double r = 1.0 / Math.Sqrt(v + eps);
            M[t] = mu; R[t] = r;
            for (int j = 0; j < d; j++) Y[o + j] = (X[o + j] - mu) * r * G[j] + (B is null ? 0 : B[j]);
        }
    }

    public void LayerNormBackward(Tensor dy, Tensor x, Tensor g, Tensor mean, Tensor rstd, Tensor dx, Tensor? dg, Tensor? db)
    {
        int d = x.Cols, T = x.Rows;
        var DY = D(dy); var X = D(x); var G = D(g); var M = D(mean); var R = D(rstd); var DX = D(dx);
        var DG = dg is null ? null : D(dg); var DB = db is null ? null : D(db);
        for (int t = 0; t < T; t++)
        {
            long o = (long)t * d;
            double mu = M[t], r = R[t];
            double sumG = 0, sumGX = 0; // Σ dxhat, Σ dxhat·xhat
            for (int j = 0; j < d; j++)
            {
                double xhat = (X[o + j] - mu) * r, gh = DY[o + j] * G[j];
                sumG += gh; sumGX += gh * xhat;
                if (DG is not null) DG[j] += DY[o + j] * xhat;
                if (DB is not null) DB[j] += DY[o + j];
            }
            for (int j = 0; j < d; j++)
            {
                double xhat = (X[o + j] - mu) * r, gh = DY[o + j] * G[j];
                DX[o + j] += r * (gh - sumG / d - xhat * sumGX / d);
            }
        }
    }

    public void RmsNorm(Tensor x, Tensor g, double eps, Tensor y, Tensor rstd)
    {
        int d = x.Cols, T = x.Rows;
        var X = D(x); var G = D(g); var Y = D(y); var R = D(rstd);
        for (int t = 0; t < T; t++)
        {
            long o = (long)t * d;
            double ms = 0; for (int j = 0; j < d; j++) ms += X[o + j] * X[o + j]; ms /= d;
            double r = 1.0 / Math.Sqrt(ms + eps);
            R[t] = r;
            for (int j = 0; j < d; j++) Y[o + j] = X[o + j] * r * G[j];
        }
    }

    public void RmsNormBackward(Tensor dy, Tensor x, Tensor g, Tensor rstd, Tensor dx, Tensor? dg)
    {
        int d = x.Cols, T = x.Rows;
        var DY = D(dy); var X = D(x); var G = D(g); var R = D(rstd); var DX = D(dx); var DG = dg is null ? null : D(dg);
        for (int t = 0; t < T; t++)
        {
            long o = (long)t * d;
            double r = R[t], dot = 0;
            for (int j = 0; j < d; j++)
            {
                dot += DY[o + j] * G[j] * X[o + j];
                if (DG is not null) DG[j] += DY[o + j] * X[o + j] * r;
            }
            for (int j = 0; j < d; j++) DX[o + j] += r * DY[o + j] * G[j] - r * r * r * X[o + j] * dot / d;
        }
    }

    // ---------------- activations ----------------

    private const double Sqrt2OverPi = 0.7978845608028654; // sqrt(2/pi)
    private const double InvSqrt2 = 0.7071067811865476;
    private const double InvSqrt2Pi = 0.3989422804014327; // 1/sqrt(2 pi)

    public static double Act(Activation act, double x) => act switch
    {
        Activation.GeluTanh => 0.5 * x * (1.0 + Math.Tanh(Sqrt2OverPi * (x + 0.044715 * x * x * x))),
        Activation.GeluErf => 0.5 * x * (1.0 + SpecialFunctions.Erf(x * InvSqrt2)),
        Activation.Relu => x > 0 ? x : 0,
        Activation.Silu => x / (1.0 + Math.Exp(-x)),
        _ => throw new ArgumentOutOfRangeException(nameof(act)),
    };

    public static double ActGrad(Activation act, double x)
    {
        switch (act)
        {
            case Activation.GeluTanh:
            {
                double u = Sqrt2OverPi * (x + 0.044715 * x * x * x);
                double th = Math.Tanh(u);
                return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * Sqrt2OverPi * (1 + 3 * 0.044715 * x * x);
            }
            case Activation.GeluErf:
                return 0.5 * (1 + SpecialFunctions.Erf(x * InvSqrt2)) + x * InvSqrt2Pi * Math.Exp(-0.5 * x * x);
            case Activation.Relu:
                return x > 0 ? 1 : 0;
            case Activation.Silu:
            {
                double s = 1.0 / (1.0 + Math.Exp(-x));
                return s * (1 + x * (1 - s));
            }
            default: throw new ArgumentOutOfRangeException(nameof(act));
        }
    }

    public void Activate(Activation act, Tensor x, Tensor y)
    {
        SameLength(x, y, "Activate");
        var X = D(x); var Y = D(y);
        for (long i = 0; i < x.Length; i++) Y[i] = Act(act, X[i]);
    }

    public void ActivateBackward(Activation act, Tensor x, Tensor dy, Tensor dx)
    {
        SameLength(x, dy, "ActivateBackward"); SameLength(x, dx, "ActivateBackward");
        var X = D(x); var DY = D(dy); var DX = D(dx);
        for (long i = 0; i < x.Length; i++) DX[i] = ActGrad(act, X[i]) * DY[i];
    }

    public void SiluMul(Tensor gate, Tensor up, Tensor y)
    {
        SameLength(gate, up, "SiluMul"); SameLength(gate, y, "SiluMul");
        var Gt = D(gate); var U = D(up); var Y = D(y);
        for (long i = 0; i < y.Length; i++) Y[i] = Act(Activation.Silu, Gt[i]) * U[i];
    }

    public void SiluMulBackward(Tensor gate, Tensor up, Tensor dy, Tensor dgate, Tensor dup)
    {
        var Gt = D(gate); var U = D(up); var DY = D(dy); var DG = D(dgate); var DU = D(dup);
        for (long i = 0; i < gate.Length; i++)
        {
            DG[i] = DY[i] * U[i] * ActGrad(Activation.Silu, Gt[i]);
            DU[i] = DY[i] * Act(Activation.Silu, Gt[i]);
        }
    }

    // ---------------- rotary ----------------

    // x [T, heads·headDim] in place
    public void Rope(Tensor x, int heads, int headDim, int rotaryDim, bool interleaved, RopeFrequencies rope, int posOffset, bool inverse)
    {
        if (x.Cols != heads * headDim) throw new ArgumentException($"Rope: {x} is not [T, {heads}·{headDim}]");
        if (rotaryDim % 2 != 0 || rotaryDim > headDim) throw new ArgumentException($"Rope: rotaryDim {rotaryDim} must be even and <= {headDim}");
        var X = D(x); int half = rotaryDim / 2;
        for (int t = 0; t < x.Rows; t++)
            for (int i = 0; i < half; i++)
            {
                var (c, s) = RopeTable.At(posOffset + t, i, rotaryDim, rope);
                if (inverse) s = -s;
                for (int h = 0; h < heads; h++)
                {
                    long o = (long)t * x.Cols + h * headDim;
                    long i0 = interleaved ? o + 2 * i : o + i;
                    long i1 = interleaved ? o + 2 * i + 1 : o + i + half;
                    double a = X[i0], b = X[i1];
                    X[i0] = a * c - b * s;
                    X[i1] = b * c + a * s;
                }
            }
    }

    // ---------------- attention ----------------

    public void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs, int window = 0) =>
        Attend(q, k, v, heads, kvHeads, headDim, o, probs, null, window);

    // Packed segments: the causal attention below with each row's keys starting at its segment's first row.
    public void AttentionSegments(Tensor q, Tensor k, Tensor v, ReadOnlySpan<int> lengths, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs)
    {
        OpShapes.Packed(q, k, "AttentionSegments");
        Attend(q, k, v, heads, kvHeads, headDim, o, probs, OpShapes.SegmentFirstRows(lengths, q.Rows), 0);
    }

    // The reference backward reads every probs entry, so the masked zeros do the masking.
    public void AttentionSegmentsBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, ReadOnlySpan<int> lengths,
        int heads, int kvHeads, int headDim, Tensor dq, Tensor dk, Tensor dv)
    {
        OpShapes.Packed(q, k, "AttentionSegmentsBackward");
        OpShapes.SegmentFirstRows(lengths, q.Rows);
        AttentionBackward(dO, q, k, v, probs, heads, kvHeads, headDim, dq, dk, dv);
    }

    // first [T] (optional): query t sees keys first[t]..S-T+t instead of 0..S-T+t. window > 0: and only
    // the last `window` of those (OpShapes.VisibleKeys), every other key masked.
    private void Attend(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs, int[]? first, int window)
    {
        int T = q.Rows, S = k.Rows, group = heads / kvHeads;
        OpShapes.Attention(q, k, v, heads, kvHeads, headDim, o);
        OpShapes.Window(window, "Attention");
        var Q = D(q); var K = D(k); var Vv = D(v); var O = D(o); var P = probs is null ? null : D(probs);
        OpShapes.AttentionProbs(probs, heads, T, S, "Attention");
        int qc = heads * headDim, kc = kvHeads * headDim;
        double scale = 1.0 / Math.Sqrt(headDim);
        var w = new double[S];
        for (int h = 0; h < heads; h++)
        {
            int g = h / group;
            for (int t = 0; t < T; t++)
            {
                var (lo, hi) = OpShapes.VisibleKeys(t, T, S, window);
                int last = hi - 1, j0 = Math.Max(lo, first?[t] ?? 0); // causal: keys j0..last
                double max = double.NegativeInfinity;
                for (int j = j0; j <= last; j++)
                {
                    double s = 0;
                    for (int e = 0; e < headDim; e++) s += Q[(long)t * qc + h * headDim + e] * K[(long)j * kc + g * headDim + e];
                    w[j] = s * scale;
                    if (w[j] > max) max = w[j];
                }
                double z = 0;
                for (int j = j0; j <= last; j++) { w[j] = Math.Exp(w[j] - max); z += w[j]; }
                for (int e = 0; e < headDim; e++) O[(long)t * qc + h * headDim + e] = 0;
                for (int j = 0; j < S; j++)
                {
                    double p = j >= j0 && j <= last ? w[j] / z : 0;
                    if (P is not null) P[((long)h * T + t) * S + j] = p;
                    if (p == 0) continue;
                    for (int e = 0; e < headDim; e++) O[(long)t * qc + h * headDim + e] += p * Vv[(long)j * kc + g * headDim + e];
                }
            }
        }
    }

    // Reads every probs entry: the zeros outside the causal window do the masking, so the window is only checked.
    public void AttentionBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, int heads, int kvHeads, int headDim,
        Tensor dq, Tensor dk, Tensor dv, int window = 0)
    {
        int T = q.Rows, S = k.Rows, group = heads / kvHeads;
        OpShapes.Attention(q, k, v, heads, kvHeads, headDim, dO);
        OpShapes.Window(window, "AttentionBackward");
        var G = D(dO); var Q = D(q); var K = D(k); var Vv = D(v); var P = D(probs);
        var DQ = D(dq); var DK = D(dk); var DV = D(dv);
        Array.Clear(DQ, 0, (int)dq.Length); Array.Clear(DK, 0, (int)dk.Length); Array.Clear(DV, 0, (int)dv.Length);
        int qc = heads * headDim, kc = kvHeads * headDim;
        double scale = 1.0 / Math.Sqrt(headDim);
        var dp = new double[S];
        for (int h = 0; h < heads; h++)
        {
            int g = h / group;
            for (int t = 0; t < T; t++)
            {
                double dot = 0;
                for (int j = 0; j < S; j++)
                {
                    double p = P[((long)h * T + t) * S + j];
                    double s = 0;
                    for (int e = 0; e < headDim; e++) s += G[(long)t * qc + h * headDim + e] * Vv[(long)j * kc + g * headDim + e];
                    dp[j] = s;
                    dot += p * s;
                    for (int e = 0; e < headDim; e++) DV[(long)j * kc + g * headDim + e] += p * G[(long)t * qc + h * headDim + e];
                }
                for (int j = 0; j < S; j++)
                {
                    double p = P[((long)h * T + t) * S + j];
                    double ds = p * (dp[j] - dot) * scale;
                    if (ds == 0) continue;
                    for (int e = 0; e < headDim; e++)
                    {
                        DQ[(long)t * qc + h * headDim + e] += ds * K[(long)j * kc + g * headDim + e];
                        DK[(long)j * kc + g * headDim + e] += ds * Q[(long)t * qc + h * headDim + e];
                    }
                }
            }
        }
    }


    // ---------------- losses ----------------

    public void LogSoftmax(Tensor logits, Tensor lp)
    {
        SameLength(logits, lp, "LogSoftmax");
        int V = logits.Cols; var X = D(logits); var Y = D(lp);
        for (int r = 0; r < logits.Rows; r++)
        {
            long o = (long)r * V;
            double max = double.NegativeInfinity;
            for (int j = 0; j < V; j++) max = Math.Max(max, X[o + j]);
            double z = 0;
            for (int j = 0; j < V; j++) z += Math.Exp(X[o + j] - max);
            double lse = max + Math.Log(z);
            for (int j = 0; j < V; j++) Y[o + j] = X[o + j] - lse;
        }
    }

    public double CrossEntropy(Tensor logits, ReadOnlySpan<int> targets, Tensor? dlogits, double scale = 1.0)
    {
        int V = logits.Cols, R = logits.Rows;
        if (targets.Length != R) throw new ArgumentException($"CrossEntropy: {targets.Length} targets for {R} rows");
        var X = D(logits); var G = dlogits is null ? null : D(dlogits);
        int count = 0; foreach (var t in targets) if (t >= 0) count++;
        if (count == 0) return 0;
        double loss = 0;
        var row = new double[V];
        for (int r = 0; r < R; r++)
        {
            int tgt = targets[r];
            if (tgt < 0) continue;
            if (tgt >= V) throw new ArgumentOutOfRangeException(nameof(targets), $"target id {tgt} is outside the vocabulary [0, {V})");
            long o = (long)r * V;
            double max = double.NegativeInfinity;
            for (int j = 0; j < V; j++) max = Math.Max(max, X[o + j]);
            double z = 0;
            for (int j = 0; j < V; j++) { row[j] = Math.Exp(X[o + j] - max); z += row[j]; }
            loss += -(X[o + tgt] - max - Math.Log(z));
            if (G is not null)
                for (int j = 0; j < V; j++) G[o + j] += scale * (row[j] / z - (j == tgt ? 1 : 0)) / count;
        }
        return loss / count;
    }

    public double KlDivergence(Tensor logits, Tensor refLogProbs, Tensor? dlogits, double scale = 1.0)
    {
        SameLength(logits, refLogProbs, "KlDivergence");
        int V = logits.Cols, R = logits.Rows;
        var X = D(logits); var LQ = D(refLogProbs); var G = dlogits is null ? null : D(dlogits);
        var lp = new double[V];
        double total = 0;
        for (int r = 0; r < R; r++)
        {
            long o = (long)r * V;
            double max = double.NegativeInfinity;
            for (int j = 0; j < V; j++) max = Math.Max(max, X[o + j]);
            double z = 0;
            for (int j = 0; j < V; j++) z += Math.Exp(X[o + j] - max);
            double lse = max + Math.Log(z), kl = 0;
            for (int j = 0; j < V; j++) { lp[j] = X[o + j] - lse; kl += Math.Exp(lp[j]) * (lp[j] - LQ[o + j]); }
            total += kl;
            // d KL / d z_j = p_j (log p_j − log q_j − KL)
            if (G is not null)
                for (int j = 0; j < V; j++) G[o + j] += scale * Math.Exp(lp[j]) * (lp[j] - LQ[o + j] - kl) / R;
        }
        return total / R;
    }
}
