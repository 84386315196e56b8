// Matrix-vector products for a one-row input (a decode step), with the linear layer's epilogue
// fused in. Why not cuBLAS: with M = 1 it spends ~5 µs on a 1600x1600 float16 product (about
// 1 TB/s, run 6a), and the engine added a kernel to narrow x to float16 before it and one to add
// the bias after it. These read x in float32, stream W once with 16-byte loads, and finish with
//   y = res + (x . W + bias);  key = act(y)        (res, bias, key optional)
// which is exactly the order of the unfused ops (MatMul, AddBias, Add / Activate).
// Deterministic: every sum runs in a fixed order (no float atomics); the split over K is reduced by
// the last block to finish, which adds the partials in split order.
#include "activation_fns.cuh"

#define GEMV_COLS 256 // columns per block of gemv_xw: 32 lanes x 8 adjacent columns
#define GEMV_ROWS 8   // warps per block of gemv_xw; warp r takes rows r, r + 8, ... of its K range
#define GEMV_BATCH 8  // rows per warp whose loads are in flight together
#define TRANSPOSE_TILE 32 // tile edge of transpose_u16: lane c of a warp takes column c of a tile row
#define TRANSPOSE_ROWS 8  // warps per block of transpose_u16; warp r copies tile rows r, r + 8, ...

struct __attribute__((aligned(16))) gemv_u32x4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(16))) gemv_f32x4 { float x, y, z, w; };

// w[0..8) = W[i .. i + 8) widened (i % 8 == 0; W + i 16-byte aligned, 32 for float32)
template <int DT>
static __device__ __forceinline__ void load8(const void* W, long long i, float* w)
{
    if (DT == DT_F32)
    {
        const gemv_f32x4* p = (const gemv_f32x4*)((const float*)W + i);
        gemv_f32x4 a = p[0], b = p[1];
        w[0] = a.x; w[1] = a.y; w[2] = a.z; w[3] = a.w;
        w[4] = b.x; w[5] = b.y; w[6] = b.z; w[7] = b.w;
    }
    else
    {
        gemv_u32x4 u = *(const gemv_u32x4*)((const unsigned short*)W + i);
        unsigned int v[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
        for (int j = 0; j < 4; j++)
        {
            // little-endian: the element at the lower address is the low half
            unsigned short lo = (unsigned short)(v[j] & 0xffffu), hi = (unsigned short)(v[j] >> 16);
            w[2 * j] = DT == DT_F16 ? half_to_float(lo) : bf16_to_float(lo);
            w[2 * j + 1] = DT == DT_F16 ? half_to_float(hi) : bf16_to_float(hi);
        }
    }
}

// A float32 load that bypasses L1: partials written by other blocks of this launch.
static __device__ __forceinline__ float load_cg(const float* p)
{
    float v;
    asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p));
    return v;
}

// y[c] = res[c] + (v + bias[c]); key[c] = act(y[c])
static __device__ __forceinline__ void gemv_epilogue(float v, long long c, const void* bias, int bdt, const float* res,
    float* y, float* key, int act)
{
    if (bias) v += load_w(bias, bdt, c);
    if (res) v = res[c] + v;
    y[c] = v;
    if (key) key[c] = act_f(act, v);
}

// x [K] float32; for z = blockIdx.z in [0, gridDim.z): W_z [K, N_z] (DT), bias_z [N_z] (bdt, or null)
//   -> y_z [N_z] = x . W_z + bias_z; for z = 0 also res [N_0] added (y_0 = res + ...) and key [N_0] = act(y_0)
//   (res, key null: none). Grid (ceil(max N / 256), S, Z), 256 threads. S > 1 splits K into S ranges;
//   ws [Z, S, max N] holds the partials and counters [Z, gridDim.x] (zero before and after) elect the
//   last block of each column tile, which sums them. vec: every N_z % 8 == 0 and every W_z aligned.
template <int DT>
static __device__ __forceinline__ void gemv_xw(const float* x, int K,
    const void* W0, const void* W1, const void* W2, const void* b0, const void* b1, const void* b2, int bdt,
    float* y0, float* y1, float* y2, int N0, int N1, int N2, const float* res, float* key, int act,
    float* ws, unsigned int* counters, int vec)
{
    __shared__ float red[GEMV_ROWS][GEMV_COLS];
    __shared__ int last;
    const int z = blockIdx.z;
    const void* W = z == 0 ? W0 : (z == 1 ? W1 : W2);
    const void* bias = z == 0 ? b0 : (z == 1 ? b1 : b2);
    float* y = z == 0 ? y0 : (z == 1 ? y1 : y2);
    const int N = z == 0 ? N0 : (z == 1 ? N1 : N2);
    const int Nmax = max(N0, max(gridDim.z > 1 ? N1 : 0, gridDim.z > 2 ? N2 : 0));
    if (z != 0) { res = 0; key = 0; }
    const int tile = blockIdx.x * GEMV_COLS;
    if (tile >= N) return; // the whole block: this matrix is narrower than the widest one

    const int lane = threadIdx.x & 31, row = threadIdx.x >> 5;
    const int S = gridDim.y, s = blockIdx.y;
    const int kc = (K + S - 1) / S;
    const int k0 = s * kc, k1 = min(K, k0 + kc);
    const int c0 = tile + lane * 8;
    float acc[8];
#pragma unroll
    for (int j = 0; j < 8; j++) acc[j] = 0.0f;
    if (c0 < N)
    {
        if (vec)
        {
            // GEMV_BATCH rows' loads issued before their FMAs (rows past k1 read as 0): a warp keeps
            // GEMV_BATCH x 512 bytes in flight, which is what streaming from HBM needs
            for (int k = k0 + row; k < k1; k += GEMV_BATCH * GEMV_ROWS)
            {
                float w[GEMV_BATCH][8];
#pragma unroll
                for (int u = 0; u < GEMV_BATCH; u++)
                {
                    const int kk = k + u * GEMV_ROWS;
                    if (kk < k1) load8<DT>(W, (long long)kk * N + c0, w[u]);
                    else
                    {
#pragma unroll
                        for (int j = 0; j < 8; j++) w[u][j] = 0.0f;
                    }
                }
#pragma unroll
                for (int u = 0; u < GEMV_BATCH; u++)
                {
                    const int kk = k + u * GEMV_ROWS;
                    const float xv = kk < k1 ? x[kk] : 0.0f;
#pragma unroll
                    for (int j = 0; j < 8; j++) acc[j] += xv * w[u][j];
                }
            }
        }
        else
        {
            for (int k = k0 + row; k < k1; k += GEMV_ROWS)
            {
                const float xv = x[k];
#pragma unroll
                for (int j = 0; j < 8; j++)
                    if (c0 + j < N) acc[j] += xv * load_w(W, DT, (long long)k * N + c0 + j);
            }
        }
    }
#pragma unroll
    for (int j = 0; j < 8; j++) red[row][lane * 8 + j] = acc[j];
    __syncthreads();
    const int c = tile + threadIdx.x; // one output column per thread from here on
    float p = 0.0f;
#pragma unroll
    for (int r = 0; r < GEMV_ROWS; r++) p += red[r][threadIdx.x];
    if (S == 1)
    {
        if (c < N) gemv_epilogue(p, c, bias, bdt, res, y, key, act);
        return;
    }
    float* part = ws + (long long)z * S * Nmax;
    if (c < N) part[(long long)s * N + c] = p;
    __threadfence(); // the partial is visible device-wide before this block's ticket is
    __syncthreads();
    unsigned int* counter = counters + z * gridDim.x + blockIdx.x;
    if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == (unsigned int)(S - 1);
    __syncthreads();
    if (!last) return;
    if (c < N)
    {
        // eight partials' loads in flight at a time (one after another they cost S L2 round trips)
        float v = 0.0f;
        int t = 0;
        for (; t + 8 <= S; t += 8)
        {
            float q[8];
#pragma unroll
            for (int u = 0; u < 8; u++) q[u] = load_cg(part + (long long)(t + u) * N + c);
#pragma unroll
            for (int u = 0; u < 8; u++) v += q[u];
        }
        for (; t < S; t++) v += load_cg(part + (long long)t * N + c);
        gemv_epilogue(v, c, bias, bdt, res, y, key, act);
    }
    if (threadIdx.x == 0) *counter = 0u; // ready for the next launch (stream order)
}

#define GEMV_XW_ENTRY(name, DT)                                                                                   \
    extern "C" __global__ void name(const float* x, int K, const void* W0, const void* W1, const void* W2,          \
        const void* b0, const void* b1, const void* b2, int bdt, float* y0, float* y1, float* y2, int N0, int N1, \
        int N2, const float* res, float* key, int act, float* ws, unsigned int* counters, int vec)                \
    {                                                                                                             \
        gemv_xw<DT>(x, K, W0, W1, W2, b0, b1, b2, bdt, y0, y1, y2, N0, N1, N2, res, key, act, ws, counters, vec); \
    }

GEMV_XW_ENTRY(gemv_xw_f32, DT_F32)
GEMV_XW_ENTRY(gemv_xw_f16, DT_F16)
GEMV_XW_ENTRY(gemv_xw_bf16, DT_BF16)

// For z = blockIdx.y: x [K] float32, W_z [N_z, K] (DT) -> y_z [N_z] = x . W_z^T + bias_z; for z = 0 also
// res added and key = act(y) (res, bias, key optional), as gemv_xw. One warp per output row (a tied
// head's 50257 rows of d; or a weight stored transposed for one-row products), lanes striding K,
// WT_BATCH 16-byte loads in flight per lane; 256-thread blocks, grid (ceil(max N / 8), Z).
// vec: K % 8 == 0, every W_z 16-byte aligned (32 for float32) and x 32-byte aligned.
#define WT_BATCH 4
template <int DT>
static __device__ __forceinline__ void gemv_wt(const float* x, int K,
    const void* W0, const void* W1, const void* W2, const void* b0, const void* b1, const void* b2, int bdt,
    float* y0, float* y1, float* y2, int N0, int N1, int N2, const float* res, float* key, int act, int vec)
{
    const int z = blockIdx.y;
    const void* W = z == 0 ? W0 : (z == 1 ? W1 : W2);
    const void* bias = z == 0 ? b0 : (z == 1 ? b1 : b2);
    float* y = z == 0 ? y0 : (z == 1 ? y1 : y2);
    const int N = z == 0 ? N0 : (z == 1 ? N1 : N2);
    if (z != 0) { res = 0; key = 0; }
    const long long n = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (n >= N) return; // the whole warp
    const long long base = n * K;
    float acc = 0.0f;
    if (vec)
    {
        for (int k = lane * 8; k < K; k += 256 * WT_BATCH)
        {
            float w[WT_BATCH][8];
            gemv_f32x4 xa[WT_BATCH], xb[WT_BATCH];
#pragma unroll
            for (int u = 0; u < WT_BATCH; u++)
            {
                const int kk = k + 256 * u;
                if (kk < K)
                {
                    load8<DT>(W, base + kk, w[u]);
                    const gemv_f32x4* xp = (const gemv_f32x4*)(x + kk);
                    xa[u] = xp[0]; xb[u] = xp[1];
                }
                else
                {
#pragma unroll
                    for (int j = 0; j < 8; j++) w[u][j] = 0.0f;
                    xa[u].x = xa[u].y = xa[u].z = xa[u].w = 0.0f;
                    xb[u].x = xb[u].y = xb[u].z = xb[u].w = 0.0f;
                }
            }
#pragma unroll
            for (int u = 0; u < WT_BATCH; u++)
                acc += xa[u].x * w[u][0] + xa[u].y * w[u][1] + xa[u].z * w[u][2] + xa[u].w * w[u][3]
                    + xb[u].x * w[u][4] + xb[u].y * w[u][5] + xb[u].z * w[u][6] + xb[u].w * w[u][7];
        }
    }
    else
    {
        for (int k = lane; k < K; k += 32) acc += x[k] * load_w(W, DT, base + k);
    }
    acc = warp_sum(acc);
    if (lane == 0) gemv_epilogue(acc, n, bias, bdt, res, y, key, act);
}

#define GEMV_WT_ENTRY(name, DT)                                                                                   \
    extern "C" __global__ void name(const float* x, int K, const void* W0, const void* W1, const void* W2,          \
        const void* b0, const void* b1, const void* b2, int bdt, float* y0, float* y1, float* y2, int N0, int N1, \
        int N2, const float* res, float* key, int act, int vec)                                                   \
    {                                                                                                             \
        gemv_wt<DT>(x, K, W0, W1, W2, b0, b1, b2, bdt, y0, y1, y2, N0, N1, N2, res, key, act, vec);               \
    }

GEMV_WT_ENTRY(gemv_wt_f32, DT_F32)
GEMV_WT_ENTRY(gemv_wt_f16, DT_F16)
GEMV_WT_ENTRY(gemv_wt_bf16, DT_BF16)

// src [rows, cols] of 16-bit elements -> dst [cols, rows]: a weight's transposed twin for gemv_wt.
// TRANSPOSE_TILE x TRANSPOSE_TILE tiles through shared memory (padded a column against bank
// conflicts); TRANSPOSE_TILE x TRANSPOSE_ROWS threads, grid (ceil(cols / TRANSPOSE_TILE), ceil(rows / TRANSPOSE_TILE)).
extern "C" __global__ void transpose_u16(const unsigned short* src, unsigned short* dst, int rows, int cols)
{
    __shared__ unsigned short tile[TRANSPOSE_TILE][TRANSPOSE_TILE + 1];
    const int tx = threadIdx.x % TRANSPOSE_TILE, ty = threadIdx.x / TRANSPOSE_TILE;
    const int c0 = blockIdx.x * TRANSPOSE_TILE, r0 = blockIdx.y * TRANSPOSE_TILE;
    for (int i = ty; i < TRANSPOSE_TILE; i += TRANSPOSE_ROWS)
    {
        const int r = r0 + i, c = c0 + tx;
        if (r < rows && c < cols) tile[i][tx] = src[(long long)r * cols + c];
    }
    __syncthreads();
    for (int i = ty; i < TRANSPOSE_TILE; i += TRANSPOSE_ROWS)
    {
        const int c = c0 + i, r = r0 + tx;
        if (c < cols && r < rows) dst[(long long)c * rows + r] = tile[tx][i];
    }
}
