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

// The fast forward (same contract as attention_fwd, which stays as its simple reference):
// flash-style tiles. A block owns ATT_QT query rows of one head (ATT_RPW rows per warp) and walks
// the key range those rows can see in tiles of ATT_KT keys staged in shared memory, one key per
// lane; each row keeps a running max, sum and output (online softmax), so K and V are read once
// per block instead of once per query row, and the work follows the visible range instead of S.
// With probs, a second pass over the tiles writes the normalised softmax (0 where masked).
// Grid (ceil(T / ATT_QT), H), block ATT_WARPS * 32 threads, dynamic shared memory
// (ATT_QT * hd + 2 * ATT_KT * (hd + 1)) floats (rows padded by one float: no bank conflicts).
// hd <= 32 * ATT_MAXC.
#define ATT_KT 32
#define ATT_WARPS 8
#define ATT_RPW 2
#define ATT_QT (ATT_WARPS * ATT_RPW)
#define ATT_MAXC 8

static __device__ __forceinline__ void att_load_tile(const float* src, float* dst, int j0, int S, int stride, int col0, int hd)
{
    for (int i = threadIdx.x; i < ATT_KT * hd; i += blockDim.x)
    {
        int r = i / hd, c = i - r * hd, j = j0 + r;
        dst[r * (hd + 1) + c] = j < S ? src[(long long)j * stride + col0 + c] : 0.0f;
    }
}

extern "C" __global__ void attention_fwd_tiled(const float* q, const float* k, const float* v, float* o, float* probs,
    const int* first, int T, int S, int H, int Hkv, int hd, float scale)
{
    extern __shared__ float sh[];
    float* qs = sh;                      // [ATT_QT][hd], pre-scaled
    float* ks = qs + ATT_QT * hd;        // [ATT_KT][hd + 1]
    float* vs = ks + ATT_KT * (hd + 1);  // [ATT_KT][hd + 1]
    int h = blockIdx.y, kh = h / (H / Hkv);
    int t0 = blockIdx.x * ATT_QT;
    int rows = T - t0 < ATT_QT ? T - t0 : ATT_QT;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int qstride = H * hd, kstride = Hkv * hd, off = S - T;

    for (int i = threadIdx.x; i < rows * hd; i += blockDim.x)
    {
        int r = i / hd, c = i - r * hd;
        qs[r * hd + c] = q[(long long)(t0 + r) * qstride + (long long)h * hd + c] * scale;
    }
    int jlo = first ? first[t0] : 0;  // first key any row of the block sees (first[] rises with t)
    int jhi = off + t0 + rows - 1;    // last key any row of the block sees

    // Per-row state in registers: every loop over rr and i is unrolled (constant indices), or the
    // arrays would live in local memory.
    float m[ATT_RPW], l[ATT_RPW], acc[ATT_RPW][ATT_MAXC];
#pragma unroll
    for (int rr = 0; rr < ATT_RPW; rr++)
    {
        m[rr] = NEG_BIG; l[rr] = 0.0f;
#pragma unroll
        for (int i = 0; i < ATT_MAXC; i++) acc[rr][i] = 0.0f;
    }

    for (int j0 = (jlo / ATT_KT) * ATT_KT; j0 <= jhi; j0 += ATT_KT)
    {
        __syncthreads(); // the previous tile is consumed (first time: qs is written)
        att_load_tile(k, ks, j0, S, kstride, kh * hd, hd);
        att_load_tile(v, vs, j0, S, kstride, kh * hd, hd);
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < ATT_RPW; rr++)
        {
            int r = warp * ATT_RPW + rr;
            if (r < rows) // warp-uniform
            {
                int t = t0 + r, lo = first ? first[t] : 0, hi = off + t;
                int j = j0 + lane;
                bool seen = j >= lo && j <= hi;
                float s = NEG_BIG;
                if (seen)
                {
                    s = 0.0f;
                    const float* qr = qs + r * hd;
                    const float* kr = ks + lane * (hd + 1);
#pragma unroll 8
                    for (int c = 0; c < hd; c++) s += qr[c] * kr[c];
                }
                float tmax = warp_max(s);
                if (tmax != NEG_BIG) // else nothing of this tile is visible to row t (warp-uniform)
                {
                    float mnew = fmaxf(m[rr], tmax);
                    float corr = expf(m[rr] - mnew);
                    float p = seen ? expf(s - mnew) : 0.0f;
                    l[rr] = l[rr] * corr + warp_sum(p);
#pragma unroll
                    for (int i = 0; i < ATT_MAXC; i++) acc[rr][i] *= corr;
#pragma unroll 8
                    for (int jj = 0; jj < ATT_KT; jj++)
                    {
                        float pj = __shfl_sync(0xffffffffu, p, jj);
                        if (pj != 0.0f) // the same on every lane
                        {
                            const float* vr = vs + jj * (hd + 1);
#pragma unroll
                            for (int i = 0; i < ATT_MAXC; i++)
                            {
                                int c = lane + 32 * i;
                                if (c < hd) acc[rr][i] += pj * vr[c];
                            }
                        }
                    }
                    m[rr] = mnew;
                }
            }
        }
    }

#pragma unroll
    for (int rr = 0; rr < ATT_RPW; rr++)
    {
        int r = warp * ATT_RPW + rr;
        if (r < rows)
        {
            float inv = 1.0f / l[rr];
            float* orow = o + (long long)(t0 + r) * qstride + (long long)h * hd;
#pragma unroll
            for (int i = 0; i < ATT_MAXC; i++)
            {
                int c = lane + 32 * i;
                if (c < hd) orow[c] = acc[rr][i] * inv;
            }
        }
    }
    if (!probs) return;

    // second pass: probs [H, T, S] row by row, every column written
    for (int j0 = 0; j0 < S; j0 += ATT_KT)
    {
        bool any = j0 + ATT_KT - 1 >= jlo && j0 <= jhi; // the same for the whole block
        if (any)
        {
            __syncthreads();
            att_load_tile(k, ks, j0, S, kstride, kh * hd, hd);
            __syncthreads();
        }
#pragma unroll
        for (int rr = 0; rr < ATT_RPW; rr++)
        {
            int r = warp * ATT_RPW + rr;
            if (r < rows)
            {
                int t = t0 + r, lo = first ? first[t] : 0, hi = off + t;
                int j = j0 + lane;
                float pv = 0.0f;
                if (any && j >= lo && j <= hi)
                {
                    float s = 0.0f;
                    const float* qr = qs + r * hd;
                    const float* kr = ks + lane * (hd + 1);
#pragma unroll 8
                    for (int c = 0; c < hd; c++) s += qr[c] * kr[c];
                    pv = expf(s - m[rr]) / l[rr];
                }
                if (j < S) probs[((long long)h * T + t) * S + j] = pv;
            }
        }
    }
}

// Backward, part 1: per (t, h) row. dO [T, H*hd], v, k [S, Hkv*hd], probs [H, T, S] ->
// dS [H, T, S] = P * (dP - rowsum(P * dP)) with dP = dO . v (scratch for part 2), and
// dq [T, H*hd] = scale * dS . k (overwritten). Grid (T, H), shared (S + BLOCK) floats.
// first [T] (optional, packed segments): row t's keys start at first[t] (as in the forward), so
// the loops skip the other segments' keys, whose probs are 0.
extern "C" __global__ void attention_bwd_q(const float* dO, const float* k, const float* v, const float* probs,
    float* dS, float* dq, const int* first, int T, int S, int H, int Hkv, int hd, float scale)
{
    extern __shared__ float sh[];
    float* ds = sh;
    float* red = sh + S;
    int t = blockIdx.x, h = blockIdx.y, kh = h / (H / Hkv);
    int last = S - T + t;
    int j0 = first ? first[t] : 0;
    int kstride = Hkv * hd;
    const float* dor = dO + (long long)t * H * hd + (long long)h * hd;
    const float* prow = probs + ((long long)h * T + t) * S;
    float* dsrow = dS + ((long long)h * T + t) * S;

    float dot = 0.0f;
    for (int j = j0 + threadIdx.x; j <= last; j += BLOCK)
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
        bool seen = j >= j0 && j <= last;
        float g = seen ? prow[j] * (ds[j] - dot) : 0.0f;
        if (seen) ds[j] = g;
        dsrow[j] = g;
    }
    __syncthreads();
    float* dqr = dq + (long long)t * H * hd + (long long)h * hd;
    for (int c = threadIdx.x; c < hd; c += BLOCK)
    {
        float acc = 0.0f;
        for (int j = j0; j <= last; j++) acc += ds[j] * k[(long long)j * kstride + (long long)kh * hd + c];
        dqr[c] = scale * acc;
    }
}

// Backward, part 2: one thread per (j, kv head, c) of dk, dv [S, Hkv*hd] (overwritten):
// dv = sum over the group's heads and t of P[h, t, j] * dO[t, h, c];
// dk = scale * sum of dS[h, t, j] * q[t, h, c]. Deterministic (no atomics).
// lastq [S] (optional, packed segments, S == T): the last query that sees key j (the end of its
// segment); without it every later query does. dS is read only where the queries see the key.
extern "C" __global__ void attention_bwd_kv(const float* dO, const float* q, const float* probs, const float* dS,
    float* dk, float* dv, const int* lastq, int T, int S, int H, int Hkv, int hd, float scale)
{
    int group = H / Hkv;
    FOR_N(idx, (long long)S * Hkv * hd)
    {
        int c = (int)(idx % hd);
        int kh = (int)((idx / hd) % Hkv);
        int j = (int)(idx / ((long long)hd * Hkv));
        int t0 = j - (S - T); // first query that sees key j
        if (t0 < 0) t0 = 0;
        int t1 = lastq ? lastq[j] : T - 1; // last query that sees key j
        float av = 0.0f, ak = 0.0f;
        for (int h = kh * group; h < (kh + 1) * group; h++)
            for (int t = t0; t <= t1; t++)
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

// The GEMM attention's middle step (CudaBackend: scores = scale * q.k^T and o = P.v are cuBLAS
// strided-batched products, one matrix per head): p [H, T, S] holds the scaled scores and becomes
// the softmax in place. Row (h, t) sees keys lo..hi, lo = first ? first[t] : 0 (packed
// segments), hi = S - T + t; every other column is written 0 (the backward relies on it).
// One warp per row, ATT_ROWS_PER_BLOCK rows per block of 32 * ATT_ROWS_PER_BLOCK threads; grid
// ceil(H * T / ATT_ROWS_PER_BLOCK).
#define ATT_ROWS_PER_BLOCK 8
extern "C" __global__ void attention_softmax_rows(float* p, const int* first, int T, int S, int H)
{
    long long row = (long long)blockIdx.x * ATT_ROWS_PER_BLOCK + threadIdx.x / 32;
    if (row >= (long long)H * T) return; // the whole warp: row is per warp
    int lane = threadIdx.x % 32;
    int t = (int)(row % T), lo = first ? first[t] : 0, hi = S - T + t;
    float* pr = p + row * S;
    float mx = NEG_BIG;
    for (int j = lo + lane; j <= hi; j += 32) mx = fmaxf(mx, pr[j]);
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lo + lane; j <= hi; j += 32) sum += expf(pr[j] - mx);
    float inv = 1.0f / warp_sum(sum);
    for (int j = lane; j < S; j += 32) pr[j] = j >= lo && j <= hi ? expf(pr[j] - mx) * inv : 0.0f;
}

// The GEMM backward's middle step: ds [H, T, S] holds dP = dO.v^T and becomes
// dS = P * (dP - rowsum(P * dP)) in place (0 wherever P is 0: masked keys, other segments).
// Layout and launch as attention_softmax_rows.
extern "C" __global__ void attention_softmax_bwd_rows(const float* p, float* ds, int T, int S, int H)
{
    long long row = (long long)blockIdx.x * ATT_ROWS_PER_BLOCK + threadIdx.x / 32;
    if (row >= (long long)H * T) return;
    int lane = threadIdx.x % 32;
    const float* pr = p + row * S;
    float* dr = ds + row * S;
    float dot = 0.0f;
    for (int j = lane; j < S; j += 32) dot += pr[j] * dr[j];
    dot = warp_sum(dot);
    for (int j = lane; j < S; j += 32) dr[j] = pr[j] * (dr[j] - dot);
}
