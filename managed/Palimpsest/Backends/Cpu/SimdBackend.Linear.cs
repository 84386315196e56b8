using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

public sealed partial class SimdBackend
{
    // Reused by the fused linear ops (one GEMM at a time per backend: the class is not thread-safe).
    private readonly LinearEpilogue _epilogue = new();

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
        MatMulWithEpilogue(x, w0, y0, b0, null, null, null);
        MatMulWithEpilogue(x, w1, y1, b1, null, null, null);
        MatMulWithEpilogue(x, w2, y2, b2, null, null, null);
    }

    // y [M, N] = x [M, K] · w [K, N], then the epilogue on each finished column group
    private unsafe void MatMulWithEpilogue(Tensor x, Tensor w, Tensor y, Tensor? b, Tensor? residual, Activation? act, Tensor? key)
    {
        Gate?.Pass();
        var (m, n, k) = OpShapes.MatMul(x, false, w, false, y);
        if (b is not null && b.Length != n) throw new ArgumentException($"Linear: bias {b} does not match {y}");
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
