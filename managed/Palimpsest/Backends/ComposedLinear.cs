using Palimpsest.Tensors;

namespace Palimpsest.Backends;

/// <summary>
/// The plain composition each <see cref="IFusedLinear"/> op stands for, on any backend, op by op in
/// the order the op's comment gives. It is what <see cref="IBackend"/>'s default IFusedLinear runs
/// (the CPU backends, where an op costs no launch), and what a transformer runs with its backend's
/// fused ops turned off (the GPU benchmark's unfused forward).
/// </summary>
public sealed class ComposedLinear(IBackend backend) : IFusedLinear
{
    // y [T, out] = residual [T, out] + (x [T, in] · w [in, out] + b [out]); residual and b optional
    public static void Linear(IBackend be, Tensor x, Tensor w, Tensor? b, Tensor y, Tensor? residual)
    {
        be.MatMul(x, false, w, false, y);
        if (b is not null) be.AddBias(y, b);
        if (residual is not null) be.Add(residual, y, y);
    }

    // up [T, f] = x [T, in] · w [in, f] + b [f]; key [T, f] = act(up)
    public static void LinearAct(IBackend be, Activation act, Tensor x, Tensor w, Tensor? b, Tensor up, Tensor key)
    {
        Linear(be, x, w, b, up, null);
        be.Activate(act, up, key);
    }

    // y_i [T, out_i] = x [T, in] · w_i [in, out_i] + b_i [out_i], i = 0, 1, 2 in turn
    public static void Linear3(IBackend be, Tensor x, Tensor w0, Tensor? b0, Tensor y0, Tensor w1, Tensor? b1, Tensor y1, Tensor w2, Tensor? b2, Tensor y2)
    {
        Linear(be, x, w0, b0, y0, null);
        Linear(be, x, w1, b1, y1, null);
        Linear(be, x, w2, b2, y2, null);
    }

    // dx [T, in] (+)= dy [T, out] · wᵀ; dw [in, out] += xᵀ · dy; db [out] += Σ_t dy; dw and db optional
    public static void LinearBackward(IBackend be, Tensor x, Tensor w, Tensor dy, Tensor dx, Tensor? dw, Tensor? db, bool accumulateInput)
    {
        be.MatMul(dy, false, w, true, dx, accumulateInput);
        if (dw is not null) be.MatMul(x, true, dy, false, dw, accumulate: true);
        if (db is not null) be.SumRows(dy, db, accumulate: true);
    }

    void IFusedLinear.Linear(Tensor x, Tensor w, Tensor? b, Tensor y, Tensor? residual) => Linear(backend, x, w, b, y, residual);

    void IFusedLinear.LinearAct(Activation act, Tensor x, Tensor w, Tensor? b, Tensor up, Tensor key) => LinearAct(backend, act, x, w, b, up, key);

    void IFusedLinear.Linear3(Tensor x, Tensor w0, Tensor? b0, Tensor y0, Tensor w1, Tensor? b1, Tensor y1, Tensor w2, Tensor? b2, Tensor y2)
        => Linear3(backend, x, w0, b0, y0, w1, b1, y1, w2, b2, y2);

    void IFusedLinear.LinearBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, Tensor? dw, Tensor? db, bool accumulateInput)
        => LinearBackward(backend, x, w, dy, dx, dw, db, accumulateInput);
}
