// LayerNorm and RMSNorm, forward and backward. One block of BLOCK threads per row (T rows of d).
#include "common.cuh"

// x [T, d], g [d], b [d] or null -> y [T, d], mean [T], rstd [T]. Two passes (mean, then the
// centred variance) so that large offsets do not cancel. Grid T.
extern "C" __global__ void layernorm_fwd(const float* x, const float* g, const float* b, float eps,
    float* y, float* mean, float* rstd, int d)
{
    __shared__ float red[BLOCK];
    long long row = (long long)blockIdx.x * d;
    float s = 0.0f;
    for (int c = threadIdx.x; c < d; c += BLOCK) s += x[row + c];
    float m = block_sum(s, red) / d;
    float v = 0.0f;
    for (int c = threadIdx.x; c < d; c += BLOCK) { float z = x[row + c] - m; v += z * z; }
    float r = 1.0f / sqrtf(block_sum(v, red) / d + eps);
    for (int c = threadIdx.x; c < d; c += BLOCK)
        y[row + c] = (x[row + c] - m) * r * g[c] + (b ? b[c] : 0.0f);
    if (threadIdx.x == 0) { mean[blockIdx.x] = m; rstd[blockIdx.x] = r; }
}

// dy, x [T, d], g [d], mean, rstd [T] -> dx [T, d] += r * (dy*g - mean(dy*g) - xhat * mean(dy*g*xhat)). Grid T.
extern "C" __global__ void layernorm_bwd_dx(const float* dy, const float* x, const float* g, const float* mean,
    const float* rstd, float* dx, int d)
{
    __shared__ float red[BLOCK];
    long long row = (long long)blockIdx.x * d;
    float m = mean[blockIdx.x], r = rstd[blockIdx.x];
    float a = 0.0f, bsum = 0.0f;
    for (int c = threadIdx.x; c < d; c += BLOCK)
    {
        float dxh = dy[row + c] * g[c];
        a += dxh;
        bsum += dxh * (x[row + c] - m) * r;
    }
    a = block_sum(a, red) / d;
    bsum = block_sum(bsum, red) / d;
    for (int c = threadIdx.x; c < d; c += BLOCK)
    {
        float xh = (x[row + c] - m) * r;
        dx[row + c] += r * (dy[row + c] * g[c] - a - xh * bsum);
    }
}

// dy, x [T, d], mean, rstd [T] -> dg [d] += sum_t dy*xhat, db [d] += sum_t dy (either may be null).
// One thread per column: a fixed summation order, no atomics.
extern "C" __global__ void layernorm_bwd_dgdb(const float* dy, const float* x, const float* mean, const float* rstd,
    float* dg, float* db, int T, int d)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= d) return;
    float sg = 0.0f, sb = 0.0f;
    for (int t = 0; t < T; t++)
    {
        float v = dy[(long long)t * d + c];
        sg += v * (x[(long long)t * d + c] - mean[t]) * rstd[t];
        sb += v;
    }
    if (dg) dg[c] += sg;
    if (db) db[c] += sb;
}

// x [T, d], g [d] -> y [T, d] = x * rstd * g, rstd [T] = 1/sqrt(mean(x^2) + eps). Grid T.
extern "C" __global__ void rmsnorm_fwd(const float* x, const float* g, float eps, float* y, float* rstd, int d)
{
    __shared__ float red[BLOCK];
    long long row = (long long)blockIdx.x * d;
    float s = 0.0f;
    for (int c = threadIdx.x; c < d; c += BLOCK) s += x[row + c] * x[row + c];
    float r = 1.0f / sqrtf(block_sum(s, red) / d + eps);
    for (int c = threadIdx.x; c < d; c += BLOCK) y[row + c] = x[row + c] * r * g[c];
    if (threadIdx.x == 0) rstd[blockIdx.x] = r;
}

// dy, x [T, d], g [d], rstd [T] -> dx [T, d] += r*dy*g - x * r^3 * mean(dy*g*x). Grid T.
extern "C" __global__ void rmsnorm_bwd_dx(const float* dy, const float* x, const float* g, const float* rstd, float* dx, int d)
{
    __shared__ float red[BLOCK];
    long long row = (long long)blockIdx.x * d;
    float r = rstd[blockIdx.x];
    float s = 0.0f;
    for (int c = threadIdx.x; c < d; c += BLOCK) s += dy[row + c] * g[c] * x[row + c];
    s = block_sum(s, red) / d;
    for (int c = threadIdx.x; c < d; c += BLOCK)
        dx[row + c] += r * dy[row + c] * g[c] - x[row + c] * r * r * r * s;
}

// dy, x [T, d], rstd [T] -> dg [d] += sum_t dy * x * rstd. One thread per column.
extern "C" __global__ void rmsnorm_bwd_dg(const float* dy, const float* x, const float* rstd, float* dg, int T, int d)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= d) return;
    float s = 0.0f;
    for (int t = 0; t < T; t++) s += dy[(long long)t * d + c] * x[(long long)t * d + c] * rstd[t];
    dg[c] += s;
}
