// Causal scaled-dot-product attention with grouped heads (GQA/MQA), forward and backward.
// Query t sits at absolute position S - T + t and sees keys 0..S-T+t; head h reads kv head
// h / (H / Hkv). The forward saves the softmax (probs) for the backward.
#include "common.cuh"

// q [T, H*hd], k, v [S, Hkv*hd] -> o [T, H*hd], probs [H, T, S] (optional, 0 where masked).
// Grid (T, H), block BLOCK, dynamic shared memory (S + BLOCK) floats: the score row and the
// reduction scratch. Fused: scores, max, exp, sum, normalise and P.V in one launch.
// first [T] (optional; packed segments, where S == T): query t sees keys first[t]..t only, the
// start of its own segment, so independent sequences laid end to end attend in one launch. The
// backward kernels need no such argument: the probs they read are 0 outside each segment.
extern "C" __global__ void attention_fwd(const float* q, const float* k, const float* v, float* o, float* probs,
    const int* first, int T, int S, int H, int Hkv, int hd, float scale)
{
    extern __shared__ float sh[];
    float* p = sh;
    float* red = sh + S;
    int t = blockIdx.x, h = blockIdx.y, kh = h / (H / Hkv);
    int last = S - T + t; // last visible key (inclusive)
    int j0 = first ? first[t] : 0; // first visible key
    int kstride = Hkv * hd;
    const float* qr = q + (long long)t * H * hd + (long long)h * hd;

    float mx = NEG_BIG;
    for (int j = j0 + threadIdx.x; j <= last; j += BLOCK)
    {
        const float* kr = k + (long long)j * kstride + (long long)kh * hd;
        float s = 0.0f;
        for (int c = 0; c < hd; c++) s += qr[c] * kr[c];
        s *= scale;
        p[j] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, red);
    float sum = 0.0f;
    for (int j = j0 + threadIdx.x; j <= last; j += BLOCK)
    {
        float e = expf(p[j] - mx);
        p[j] = e;
        sum += e;
    }
    float inv = 1.0f / block_sum(sum, red);
    for (int j = threadIdx.x; j < S; j += BLOCK)
    {
        bool seen = j >= j0 && j <= last;
        float pj = seen ? p[j] * inv : 0.0f;
        if (seen) p[j] = pj;
        if (probs) probs[((long long)h * T + t) * S + j] = pj;
    }
    __syncthreads();
    float* orow = o + (long long)t * H * hd + (long long)h * hd;
    for (int c = threadIdx.x; c < hd; c += BLOCK)
    {
        float acc = 0.0f;
        for (int j = j0; j <= last; j++) acc += p[j] * v[(long long)j * kstride + (long long)kh * hd + c];
        orow[c] = acc;
    }
}

// Backward, part 1: per (t, h) row. dO [T, H*hd], v, k [S, Hkv*hd], probs [H, T, S] ->
// dS [H, T, S] = P * (dP - rowsum(P * dP)) with dP = dO . v (scratch for part 2), and
// dq [T, H*hd] = scale * dS . k (overwritten). Grid (T, H), shared (S + BLOCK) floats.
extern "C" __global__ void attention_bwd_q(const float* dO, const float* k, const float* v, const float* probs,
    float* dS, float* dq, int T, int S, int H, int Hkv, int hd, float scale)
{
    extern __shared__ float sh[];
    float* ds = sh;
    float* red = sh + S;
    int t = blockIdx.x, h = blockIdx.y, kh = h / (H / Hkv);
    int last = S - T + t;
    int kstride = Hkv * hd;
    const float* dor = dO + (long long)t * H * hd + (long long)h * hd;
    const float* prow = probs + ((long long)h * T + t) * S;
    float* dsrow = dS + ((long long)h * T + t) * S;

    float dot = 0.0f;
    for (int j = threadIdx.x; j <= last; j += BLOCK)
    {
        const float* vr = v + (long long)j * kstride + (long long)kh * hd;
        float dp = 0.0f;
        for (int c = 0; c < hd; c++) dp += dor[c] * vr[c];
        ds[j] = dp;
        dot += prow[j] * dp;
    }
    dot = block_sum(dot, red); // also orders the ds[] writes before the reads below
    for (int j = threadIdx.x; j < S; j += BLOCK)
    {
        float g = j <= last ? prow[j] * (ds[j] - dot) : 0.0f;
        if (j <= last) ds[j] = g;
        dsrow[j] = g;
    }
    __syncthreads();
    float* dqr = dq + (long long)t * H * hd + (long long)h * hd;
    for (int c = threadIdx.x; c < hd; c += BLOCK)
    {
        float acc = 0.0f;
        for (int j = 0; j <= last; j++) acc += ds[j] * k[(long long)j * kstride + (long long)kh * hd + c];
        dqr[c] = scale * acc;
    }
}

// Backward, part 2: one thread per (j, kv head, c) of dk, dv [S, Hkv*hd] (overwritten):
// dv = sum over the group's heads and t of P[h, t, j] * dO[t, h, c];
// dk = scale * sum of dS[h, t, j] * q[t, h, c]. Deterministic (no atomics).
extern "C" __global__ void attention_bwd_kv(const float* dO, const float* q, const float* probs, const float* dS,
    float* dk, float* dv, int T, int S, int H, int Hkv, int hd, float scale)
{
    int group = H / Hkv;
    FOR_N(idx, (long long)S * Hkv * hd)
    {
        int c = (int)(idx % hd);
        int kh = (int)((idx / hd) % Hkv);
        int j = (int)(idx / ((long long)hd * Hkv));
        int t0 = j - (S - T); // first query that sees key j
        if (t0 < 0) t0 = 0;
        float av = 0.0f, ak = 0.0f;
        for (int h = kh * group; h < (kh + 1) * group; h++)
            for (int t = t0; t < T; t++)
            {
                long long pi = ((long long)h * T + t) * S + j;
                long long qi = (long long)t * H * hd + (long long)h * hd + c;
                av += probs[pi] * dO[qi];
                ak += dS[pi] * q[qi];
            }
        dv[idx] = av;
        dk[idx] = scale * ak;
    }
}
