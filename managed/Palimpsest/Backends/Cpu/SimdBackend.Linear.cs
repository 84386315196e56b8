using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

public sealed partial class SimdBackend
{
    // Reused by the fused linear ops (one GEMM at a time per backend: the class is not thread-safe).
    private readonly LinearEpilogue _epilogue = new();
    private readonly LinearEpilogue[] _sharedEpilogues = [new(), new(), new()];

    /// <summary>
    /// q, k, v as one prefill GEMM over their packed weights (a packed once, the three outputs' column
    /// groups shared out together) once all three have their copies, which earlier prefills make
    /// through the one-product path; false, with nothing computed and nothing counted, until then.
    /// </summary>
    private unsafe bool Linear3Shared(Tensor x, Tensor w0, Tensor? b0, Tensor y0, Tensor w1, Tensor? b1, Tensor y1, Tensor w2, Tensor? b2, Tensor y2)
    {
        var (m, n0, k) = OpShapes.MatMul(x, false, w0, false, y0);
        var (_, n1, _) = OpShapes.MatMul(x, false, w1, false, y1);
        var (_, n2, _) = OpShapes.MatMul(x, false, w2, false, y2);
        if (m == 0 || k == 0 || !HasPacked(w0, m, n0, k) || !HasPacked(w1, m, n1, k) || !HasPacked(w2, m, n2, k)) return false;
        CheckBias(b0, n0, y0); CheckBias(b1, n1, y1); CheckBias(b2, n2, y2);
        Gate?.Pass(); Gate?.Pass(); Gate?.Pass(); // one pass per product, as three MatMuls would give
        // after the gate: a write made while the op waited there marks a copy stale, and this refreshes it
        if (PackedFor(w0, false, m, n0, k) is not { } p0 || PackedFor(w1, false, m, n1, k) is not { } p1
            || PackedFor(w2, false, m, n2, k) is not { } p2) return false;
        fixed (float* py0 = F(y0), py1 = F(y1), py2 = F(y2))
        fixed (float* pb0 = b0 is null ? null : R(b0), pb1 = b1 is null ? null : R(b1), pb2 = b2 is null ? null : R(b2))
        {
            var e = _sharedEpilogues;
            e[0].Bias = pb0; e[0].N = n0; e[1].Bias = pb1; e[1].N = n1; e[2].Bias = pb2; e[2].N = n2;
            try
            {
                Gemm.SgemmPrepackedShared(m, k, R(x), x.Cols, [p0, p1, p2], [(nint)py0, (nint)py1, (nint)py2],
                    [b0 is null ? null : e[0], b1 is null ? null : e[1], b2 is null ? null : e[2]], _workers.Threads, _workers);
            }
            finally { foreach (var ep in e) ep.Bias = null; }
        }
        return true;
    }

    // One decode step's q, k, v products as one GEMV over the checkpoint tensor they are views of.
    private float[] _adjacentRow = [];

    /// <summary>Whether <see cref="Linear3Adjacent"/> may run (tests and benchmarks compare it with three GEMVs).</summary>
    internal bool AdjacentLinear3 { get; set; } = true;

    /// <summary>How many times <see cref="Linear3Adjacent"/> ran (tests check that a model takes it).</summary>
    internal long AdjacentLinear3Runs { get; private set; }

    /// <summary>
    /// q, k, v of one token (x [1, K]) as one GEMV when their weights are 16-bit views, read in place,
    /// of one tensor that holds them side by side (GPT-2's c_attn [K, 3d], read as three [K, d] views
    /// with row stride 3d; or three transposed views one after the other): y [1, n0 + n1 + n2] = x · [w0 w1 w2],
    /// then split and biased. Three GEMVs each read a third of every row of the tensor (short strided
    /// stretches the prefetchers follow badly: GPT-2's q, k and v in bf16 ran at 9–16 GB/s); one reads
    /// the rows whole, once. Same products, each element's sum over k in the same order (the GEMV splits
    /// k, not the columns). False, with nothing computed or counted, for anything else.
    /// </summary>
    private unsafe bool Linear3Adjacent(Tensor x, Tensor w0, Tensor? b0, Tensor y0, Tensor w1, Tensor? b1, Tensor y1, Tensor w2, Tensor? b2, Tensor y2)
    {
        if (w0 is not SimdHalfTensor { Promoted: null } h0 || w1 is not SimdHalfTensor { Promoted: null } h1
            || w2 is not SimdHalfTensor { Promoted: null } h2 || x.Rows != 1 || !AdjacentLinear3) return false;
        if (h1.Kind != h0.Kind || h2.Kind != h0.Kind || h1.Transposed != h0.Transposed || h2.Transposed != h0.Transposed
            || h1.Ld != h0.Ld || h2.Ld != h0.Ld) return false;
        var (_, n0, k) = OpShapes.MatMul(x, false, w0, false, y0); // one row: x.Rows is 1
        var (_, n1, _) = OpShapes.MatMul(x, false, w1, false, y1);
        var (_, n2, _) = OpShapes.MatMul(x, false, w2, false, y2);
        int n = n0 + n1 + n2, ld = h0.Ld;
        bool trans = h0.Transposed;
        // side by side: the next view starts where this one's columns (rows, when transposed) end
        long step0 = trans ? (long)n0 * ld : n0, step1 = trans ? (long)n1 * ld : n1;
        if (k == 0 || h1.Start != h0.Start + step0 || h2.Start != h1.Start + step1 || (!trans && n > ld)) return false;
        CheckBias(b0, n0, y0); CheckBias(b1, n1, y1); CheckBias(b2, n2, y2);
        Gate?.Pass(); Gate?.Pass(); Gate?.Pass(); // one pass per product, as three MatMuls would give
        if (_adjacentRow.Length < n) _adjacentRow = new float[n];
        long span = trans ? (long)(n - 1) * ld + k : (long)(k - 1) * ld + n;
        var y = _adjacentRow.AsSpan(0, n);
        Gemm.SgemmHalf(false, trans, 1, n, k, R(x), x.Cols, new ReadOnlySpan<ushort>(h0.Start, checked((int)span)), ld, h0.Kind, y, n, false,
            Gemm.DefaultKernel, _workers.Threads, _workers);
        Split(y[..n0], b0, y0);
        Split(y.Slice(n0, n1), b1, y1);
        Split(y.Slice(n0 + n1, n2), b2, y2);
        AdjacentLinear3Runs++;
        return true;

        static void Split(ReadOnlySpan<float> part, Tensor? bias, Tensor dst)
        {
            var d = F(dst).AsSpan(0, part.Length);
            if (bias is null) part.CopyTo(d);
            else System.Numerics.Tensors.TensorPrimitives.Add(part, R(bias).AsSpan(0, part.Length), d);
        }
    }

    private static void CheckBias(Tensor? b, int n, Tensor y)
    {
        if (b is not null && b.Length != n) throw new ArgumentException($"Linear: bias {b} does not match {y}");
    }

    // y [T, out] = residual [T, out] + (x [T, in] · w [in, out] + b [out]); residual and b optional.
    // Bias and residual ride on the GEMM (see IGemmEpilogue): same operations in the same order as the
    // composition, so the result is the composition's.
    void IFusedLinear.Linear(Tensor x, Tensor w, Tensor? b, Tensor y, Tensor? residual)
    {
        if (residual is not null) SameLength(residual, y, "Linear residual");
        MatMulWithEpilogue(x, w, y, b, residual, act: null, key: null);
    }

    // up [T, f] = x [T, in] · w [in, f] + b [f]; key [T, f] = act(up)
    void IFusedLinear.LinearAct(Activation act, Tensor x, Tensor w, Tensor? b, Tensor up, Tensor key)
    {
        SameLength(up, key, "LinearAct");
        MatMulWithEpilogue(x, w, up, b, residual: null, act, key);
    }

    // y_i [T, out_i] = x [T, in] · w_i [in, out_i] + b_i [out_i], i = 0, 1, 2 in turn
    void IFusedLinear.Linear3(Tensor x, Tensor w0, Tensor? b0, Tensor y0, Tensor w1, Tensor? b1, Tensor y1, Tensor w2, Tensor? b2, Tensor y2)
    {
        if (Linear3Shared(x, w0, b0, y0, w1, b1, y1, w2, b2, y2)) return;
        if (Linear3Adjacent(x, w0, b0, y0, w1, b1, y1, w2, b2, y2)) return;
        MatMulWithEpilogue(x, w0, y0, b0, null, null, null);
        MatMulWithEpilogue(x, w1, y1, b1, null, null, null);
        MatMulWithEpilogue(x, w2, y2, b2, null, null, null);
    }

    // y [M, N] = x [M, K] · w [K, N], then the epilogue on each finished column group
    private unsafe void MatMulWithEpilogue(Tensor x, Tensor w, Tensor y, Tensor? b, Tensor? residual, Activation? act, Tensor? key)
    {
        Gate?.Pass();
        var (m, n, k) = OpShapes.MatMul(x, false, w, false, y);
        CheckBias(b, n, y);
        fixed (float* pb = b is null ? null : F(b), pr = residual is null ? null : F(residual), pk = key is null ? null : F(key))
        {
            var e = _epilogue;
            e.Bias = b is null ? null : pb;
            e.Residual = residual is null ? null : pr;
            e.Key = key is null ? null : pk;
            e.N = n; e.Act = act;
            try
            {
                if (w is SimdHalfTensor { Promoted: null } h) // a 16-bit weight read in place (stored transposed: the other flag)
                    Gemm.SgemmHalf(false, h.Transposed, m, n, k, R(x), x.Cols, h.Bits, h.Ld, h.Kind, F(y), n, false, Gemm.DefaultKernel, _workers.Threads, _workers,
                        b is null && residual is null && act is null ? null : e);
                else if (PackedFor(w, false, m, n, k) is { } packed)
                    Gemm.SgemmPrepacked(false, m, n, k, R(x), x.Cols, packed, F(y), n, false, _workers.Threads, _workers,
                        b is null && residual is null && act is null ? null : e);
                else Gemm.Sgemm(false, false, m, n, k, R(x), x.Cols, R(w), w.Cols, F(y), n, false, Gemm.DefaultKernel, _workers.Threads, _workers,
                    b is null && residual is null && act is null ? null : e);
            }
            finally { e.Bias = e.Residual = e.Key = null; }
        }
    }
}
