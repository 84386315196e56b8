using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

// Every kernel entry point of kernels/*.cu with its parameter list (see KernelSet): device
// pointers are ulong, C int is int, long long and unsigned long long are long and ulong, float is
// float. Shapes and semantics are stated at each entry in the .cu; the ops in CudaBackend.*.cs say
// which grid they launch.

/// <summary>kernels/activations.cu</summary>
internal sealed class ActivationsKernels(IKernelLauncher target) : KernelSet(target)
{
    public void activate(in KernelGrid at, int act, ulong x, ulong y, long n) => Launch(nameof(activate), at, act, x, y, n);
    public void activate_backward(in KernelGrid at, int act, ulong x, ulong dy, ulong dx, long n) => Launch(nameof(activate_backward), at, act, x, dy, dx, n);
    public void silu_mul(in KernelGrid at, ulong gate, ulong up, ulong y, long n) => Launch(nameof(silu_mul), at, gate, up, y, n);
    public void silu_mul_backward(in KernelGrid at, ulong gate, ulong up, ulong dy, ulong dgate, ulong dup, long n) => Launch(nameof(silu_mul_backward), at, gate, up, dy, dgate, dup, n);
}

/// <summary>kernels/attention.cu</summary>
internal sealed class AttentionKernels(IKernelLauncher target) : KernelSet(target)
{
    public void attention_fwd(in KernelGrid at, ulong q, ulong k, ulong v, ulong o, ulong probs, ulong first, int T, int S, int H, int Hkv, int hd, float scale) => Launch(nameof(attention_fwd), at, q, k, v, o, probs, first, T, S, H, Hkv, hd, scale);
    public void attention_fwd_tiled(in KernelGrid at, ulong q, ulong k, ulong v, ulong o, ulong probs, ulong first, int T, int S, int H, int Hkv, int hd, float scale) => Launch(nameof(attention_fwd_tiled), at, q, k, v, o, probs, first, T, S, H, Hkv, hd, scale);
    public void attention_bwd_q(in KernelGrid at, ulong dO, ulong k, ulong v, ulong probs, ulong dS, ulong dq, ulong first, int T, int S, int H, int Hkv, int hd, float scale) => Launch(nameof(attention_bwd_q), at, dO, k, v, probs, dS, dq, first, T, S, H, Hkv, hd, scale);
    public void attention_bwd_kv(in KernelGrid at, ulong dO, ulong q, ulong probs, ulong dS, ulong dk, ulong dv, ulong lastq, int T, int S, int H, int Hkv, int hd, float scale) => Launch(nameof(attention_bwd_kv), at, dO, q, probs, dS, dk, dv, lastq, T, S, H, Hkv, hd, scale);
    public void attention_softmax_rows(in KernelGrid at, ulong p, ulong first, int T, int S, int H) => Launch(nameof(attention_softmax_rows), at, p, first, T, S, H);
    public void attention_softmax_bwd_rows(in KernelGrid at, ulong p, ulong ds, int T, int S, int H) => Launch(nameof(attention_softmax_bwd_rows), at, p, ds, T, S, H);
}

/// <summary>kernels/elementwise.cu</summary>
internal sealed class ElementwiseKernels(IKernelLauncher target) : KernelSet(target)
{
    public void add_f32(in KernelGrid at, ulong a, ulong b, ulong dst, long n) => Launch(nameof(add_f32), at, a, b, dst, n);
    public void axpy_f32(in KernelGrid at, float alpha, ulong src, ulong dst, long n) => Launch(nameof(axpy_f32), at, alpha, src, dst, n);
    public void add_bias_f32(in KernelGrid at, ulong x, ulong bias, int dtype, long rows, int cols) => Launch(nameof(add_bias_f32), at, x, bias, dtype, rows, cols);
    public void bias_residual_f32(in KernelGrid at, ulong y, ulong bias, int dtype, ulong res, long rows, int cols) => Launch(nameof(bias_residual_f32), at, y, bias, dtype, res, rows, cols);
    public void bias_act_f32(in KernelGrid at, ulong up, ulong bias, int dtype, ulong key, int act, long rows, int cols) => Launch(nameof(bias_act_f32), at, up, bias, dtype, key, act, rows, cols);
    public void add_bias3_f32(in KernelGrid at, ulong y0, ulong b0, int n0, ulong y1, ulong b1, int n1, ulong y2, ulong b2, int n2, int dtype, long rows) => Launch(nameof(add_bias3_f32), at, y0, b0, n0, y1, b1, n1, y2, b2, n2, dtype, rows);
    public void sum_rows_f32(in KernelGrid at, ulong x, ulong dst, int rows, int cols, int accumulate) => Launch(nameof(sum_rows_f32), at, x, dst, rows, cols, accumulate);
    public void add_to_row_f32(in KernelGrid at, ulong x, ulong v, int row, int d) => Launch(nameof(add_to_row_f32), at, x, v, row, d);
    public void get_row_f32(in KernelGrid at, ulong x, ulong dst, int row, int d, int accumulate) => Launch(nameof(get_row_f32), at, x, dst, row, d, accumulate);
    public void widen_to_f32(in KernelGrid at, ulong src, int dtype, ulong dst, long n) => Launch(nameof(widen_to_f32), at, src, dtype, dst, n);

    /// <summary>f32_to_f16 or f32_to_bf16: float32 src rounded to dst's type (F16, else BF16).</summary>
    [KernelEntries("f32_to_f16", "f32_to_bf16")]
    public void f32_to_narrow(DType dst16, in KernelGrid at, ulong src, ulong dst, long n) =>
        Launch(dst16 == DType.F16 ? "f32_to_f16" : "f32_to_bf16", at, src, dst, n);

    public void fill_uniform(in KernelGrid at, ulong dst, int dtype, long n, ulong seed, float scale, float offset) => Launch(nameof(fill_uniform), at, dst, dtype, n, seed, scale, offset);
}

/// <summary>kernels/embedding.cu</summary>
internal sealed class EmbeddingKernels(IKernelLauncher target) : KernelSet(target)
{
    public void embed(in KernelGrid at, ulong ids, ulong wte, int wteType, ulong wpe, int wpeType, int posOffset, ulong dst, int d) => Launch(nameof(embed), at, ids, wte, wteType, wpe, wpeType, posOffset, dst, d);
    public void embed_backward(in KernelGrid at, ulong ids, ulong dy, ulong dwte, ulong dwpe, int posOffset, int T, int d) => Launch(nameof(embed_backward), at, ids, dy, dwte, dwpe, posOffset, T, d);
}

/// <summary>kernels/gemv.cu</summary>
internal sealed class GemvKernels(IKernelLauncher target) : KernelSet(target)
{
    /// <summary>gemv_xw_f32, _f16 or _bf16 for weights stored as <paramref name="w"/> (F16, BF16, else F32).</summary>
    [KernelEntries("gemv_xw_f32", "gemv_xw_f16", "gemv_xw_bf16")]
    public void gemv_xw(DType w, in KernelGrid at, ulong x, int K, ulong W0, ulong W1, ulong W2, ulong b0, ulong b1, ulong b2, int bdt,
        ulong y0, ulong y1, ulong y2, int N0, int N1, int N2, ulong res, ulong key, int act, ulong ws, ulong counters, int vec) =>
        Launch(w switch { DType.F16 => "gemv_xw_f16", DType.BF16 => "gemv_xw_bf16", _ => "gemv_xw_f32" }, at,
            x, K, W0, W1, W2, b0, b1, b2, bdt, y0, y1, y2, N0, N1, N2, res, key, act, ws, counters, vec);

    /// <summary>gemv_wt_f32, _f16 or _bf16 for weights stored as <paramref name="w"/> (F16, BF16, else F32).</summary>
    [KernelEntries("gemv_wt_f32", "gemv_wt_f16", "gemv_wt_bf16")]
    public void gemv_wt(DType w, in KernelGrid at, ulong x, int K, ulong W0, ulong W1, ulong W2, ulong b0, ulong b1, ulong b2, int bdt,
        ulong y0, ulong y1, ulong y2, int N0, int N1, int N2, ulong res, ulong key, int act, int vec) =>
        Launch(w switch { DType.F16 => "gemv_wt_f16", DType.BF16 => "gemv_wt_bf16", _ => "gemv_wt_f32" }, at,
            x, K, W0, W1, W2, b0, b1, b2, bdt, y0, y1, y2, N0, N1, N2, res, key, act, vec);

    public void transpose_u16(in KernelGrid at, ulong src, ulong dst, int rows, int cols) => Launch(nameof(transpose_u16), at, src, dst, rows, cols);
}

/// <summary>kernels/losses.cu</summary>
internal sealed class LossesKernels(IKernelLauncher target) : KernelSet(target)
{
    public void log_softmax(in KernelGrid at, ulong logits, ulong lp, int V) => Launch(nameof(log_softmax), at, logits, lp, V);
    public void cross_entropy(in KernelGrid at, ulong logits, ulong targets, ulong nll, ulong dlogits, int V, float gscale) => Launch(nameof(cross_entropy), at, logits, targets, nll, dlogits, V, gscale);
    public void kl_div(in KernelGrid at, ulong logits, ulong refLp, ulong kl, ulong dlogits, int V, float gscale) => Launch(nameof(kl_div), at, logits, refLp, kl, dlogits, V, gscale);
}

/// <summary>kernels/norms.cu</summary>
internal sealed class NormsKernels(IKernelLauncher target) : KernelSet(target)
{
    public void layernorm_fwd(in KernelGrid at, ulong x, ulong g, ulong b, float eps, ulong y, ulong mean, ulong rstd, int d) => Launch(nameof(layernorm_fwd), at, x, g, b, eps, y, mean, rstd, d);
    public void layernorm_bwd_dx(in KernelGrid at, ulong dy, ulong x, ulong g, ulong mean, ulong rstd, ulong dx, int d) => Launch(nameof(layernorm_bwd_dx), at, dy, x, g, mean, rstd, dx, d);
    public void layernorm_bwd_dgdb(in KernelGrid at, ulong dy, ulong x, ulong mean, ulong rstd, ulong dg, ulong db, int T, int d) => Launch(nameof(layernorm_bwd_dgdb), at, dy, x, mean, rstd, dg, db, T, d);
    public void rmsnorm_fwd(in KernelGrid at, ulong x, ulong g, float eps, ulong y, ulong rstd, int d) => Launch(nameof(rmsnorm_fwd), at, x, g, eps, y, rstd, d);
    public void rmsnorm_bwd_dx(in KernelGrid at, ulong dy, ulong x, ulong g, ulong rstd, ulong dx, int d) => Launch(nameof(rmsnorm_bwd_dx), at, dy, x, g, rstd, dx, d);
    public void rmsnorm_bwd_dg(in KernelGrid at, ulong dy, ulong x, ulong rstd, ulong dg, int T, int d) => Launch(nameof(rmsnorm_bwd_dg), at, dy, x, rstd, dg, T, d);
}

/// <summary>kernels/rotary.cu</summary>
internal sealed class RotaryKernels(IKernelLauncher target) : KernelSet(target)
{
    public void rope(in KernelGrid at, ulong x, ulong cosT, ulong sinT, int T, int heads, int headDim, int rotaryDim, int interleaved, int posOffset, int inverse) => Launch(nameof(rope), at, x, cosT, sinT, T, heads, headDim, rotaryDim, interleaved, posOffset, inverse);
}
