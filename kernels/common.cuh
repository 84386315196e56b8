// Shared device helpers of Palimpsest's kernels. Compiles under clang-14 (with clang_cuda_min.h
// force-included) and under nvcc (which provides expf/sqrtf/atomicAdd itself).
#pragma once

// Row kernels run one block of BLOCK threads per row; the reductions below assume exactly that.
#define BLOCK 256
#define NEG_BIG (-3.0e38f)

// Sum / max of v over one warp (all 32 lanes active); every lane gets the result.
static __device__ __forceinline__ float warp_sum(float v)
{
    for (int m = 16; m > 0; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
    for (int m = 16; m > 0; m >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
    return v;
}

// Sum of v over the block (every thread of the BLOCK calls it); sh holds at least BLOCK / 32
// floats. Every thread gets the result. Warp shuffles, then the BLOCK / 32 warp sums added in a
// fixed order by every thread: two barriers instead of a shared-memory tree's eight, and the
// same order on every run (deterministic).
static __device__ __forceinline__ float block_sum(float v, float* sh)
{
    v = warp_sum(v);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = sh[0];
    for (int w = 1; w < BLOCK / 32; w++) r += sh[w];
    __syncthreads(); // sh is reused by the next reduction
    return r;
}

static __device__ __forceinline__ float block_max(float v, float* sh)
{
    v = warp_max(v);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = sh[0];
    for (int w = 1; w < BLOCK / 32; w++) r = fmaxf(r, sh[w]);
    __syncthreads();
    return r;
}

// Storage types of weights (matches the managed DType order F32=0, F16=1, BF16=2 used by launchers).
#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2

static __device__ __forceinline__ float half_to_float(unsigned short h)
{
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

static __device__ __forceinline__ unsigned short float_to_half(float f)
{
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

static __device__ __forceinline__ float bf16_to_float(unsigned short b)
{
    unsigned int u = ((unsigned int)b) << 16;
    return *(float*)&u;
}

// Round to nearest even (NaN inputs are not expected in weights).
static __device__ __forceinline__ unsigned short float_to_bf16(float f)
{
    unsigned int u = *(unsigned int*)&f;
    u += 0x7fffu + ((u >> 16) & 1u);
    return (unsigned short)(u >> 16);
}

// Element i of a weight stored as dtype (F32 / F16 / BF16), widened to float.
static __device__ __forceinline__ float load_w(const void* p, int dtype, long long i)
{
    if (dtype == DT_F16) return half_to_float(((const unsigned short*)p)[i]);
    if (dtype == DT_BF16) return bf16_to_float(((const unsigned short*)p)[i]);
    return ((const float*)p)[i];
}

static __device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// Grid-stride loop over [0, n).
#define FOR_N(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)
