// Log-softmax, cross-entropy and KL divergence with their gradients. One block per row of V logits.
#include "common.cuh"

// max and log-sum-exp of row x [V]
static __device__ __forceinline__ float row_lse(const float* x, int V, float* red)
{
    float mx = NEG_BIG;
    for (int c = threadIdx.x; c < V; c += BLOCK) mx = fmaxf(mx, x[c]);
    mx = block_max(mx, red);
    float s = 0.0f;
    for (int c = threadIdx.x; c < V; c += BLOCK) s += expf(x[c] - mx);
    return mx + logf(block_sum(s, red));
}

// logits [R, V] -> lp [R, V] = log_softmax row-wise. Grid R.
extern "C" __global__ void log_softmax(const float* logits, float* lp, int V)
{
    __shared__ float red[BLOCK];
    const float* x = logits + (long long)blockIdx.x * V;
    float lse = row_lse(x, V, red);
    for (int c = threadIdx.x; c < V; c += BLOCK) lp[(long long)blockIdx.x * V + c] = x[c] - lse;
}

// logits [R, V], targets [R] -> nll [R] = -log p[target] (0 where target < 0);
// dlogits [R, V] (optional) += gscale * (softmax - onehot(target)). Grid R.
extern "C" __global__ void cross_entropy(const float* logits, const int* targets, float* nll, float* dlogits, int V, float gscale)
{
    __shared__ float red[BLOCK];
    int r = blockIdx.x;
    int tgt = targets[r];
    if (tgt < 0)
    {
        if (threadIdx.x == 0) nll[r] = 0.0f;
        return;
    }
    const float* x = logits + (long long)r * V;
    float lse = row_lse(x, V, red);
    if (threadIdx.x == 0) nll[r] = lse - x[tgt];
    if (dlogits)
        for (int c = threadIdx.x; c < V; c += BLOCK)
            dlogits[(long long)r * V + c] += gscale * (expf(x[c] - lse) - (c == tgt ? 1.0f : 0.0f));
}

// logits, refLp [R, V] -> kl [R] = sum_v P (log P - refLp), P = softmax(logits);
// dlogits [R, V] (optional) += gscale * P * (log P - refLp - kl[r]). Grid R.
extern "C" __global__ void kl_div(const float* logits, const float* refLp, float* kl, float* dlogits, int V, float gscale)
{
    __shared__ float red[BLOCK];
    int r = blockIdx.x;
    const float* x = logits + (long long)r * V;
    const float* q = refLp + (long long)r * V;
    float lse = row_lse(x, V, red);
    float s = 0.0f;
    for (int c = threadIdx.x; c < V; c += BLOCK)
    {
        float lp = x[c] - lse;
        s += expf(lp) * (lp - q[c]);
    }
    float klr = block_sum(s, red);
    if (threadIdx.x == 0) kl[r] = klr;
    if (dlogits)
        for (int c = threadIdx.x; c < V; c += BLOCK)
        {
            float lp = x[c] - lse;
            dlogits[(long long)r * V + c] += gscale * expf(lp) * (lp - q[c] - klr);
        }
}
