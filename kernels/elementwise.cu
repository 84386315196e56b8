// Elementwise and row/column helpers: add, axpy, bias add, row sums, row get/add, dtype conversion,
// random fill (benchmarks). All float32 unless the name says otherwise; n counts elements.
#include "activation_fns.cuh"

// a, b, dst [n]; dst may alias a or b
extern "C" __global__ void add_f32(const float* a, const float* b, float* dst, long long n)
{
    FOR_N(i, n) dst[i] = a[i] + b[i];
}

// src, dst [n]: dst += alpha * src
extern "C" __global__ void axpy_f32(float alpha, const float* src, float* dst, long long n)
{
    FOR_N(i, n) dst[i] += alpha * src[i];
}

// x [rows, cols] += bias [cols] (bias stored as dtype)
extern "C" __global__ void add_bias_f32(float* x, const void* bias, int dtype, long long rows, int cols)
{
    FOR_N(i, rows * cols) x[i] += load_w(bias, dtype, i % cols);
}

// Epilogues of a linear layer whose product cuBLAS wrote into y (several rows: no gemv.cu),
// in the order of the unfused ops.
// y [rows, cols] = res + (y + bias): bias [cols] (dtype; null: none), res [rows, cols] (null: none)
extern "C" __global__ void bias_residual_f32(float* y, const void* bias, int dtype, const float* res, long long rows, int cols)
{
    FOR_N(i, rows * cols)
    {
        float v = y[i];
        if (bias) v += load_w(bias, dtype, i % cols);
        if (res) v = res[i] + v;
        y[i] = v;
    }
}

// up [rows, cols] += bias [cols] (dtype; null: none); key [rows, cols] = act(up)
extern "C" __global__ void bias_act_f32(float* up, const void* bias, int dtype, float* key, int act, long long rows, int cols)
{
    FOR_N(i, rows * cols)
    {
        float v = up[i];
        if (bias) v += load_w(bias, dtype, i % cols);
        up[i] = v;
        key[i] = act_f(act, v);
    }
}

// y_z [rows, n_z] += b_z [n_z] for z = blockIdx.y in {0, 1, 2} (b_z null: that one is left alone);
// q, k and v's biases in one launch
extern "C" __global__ void add_bias3_f32(float* y0, const void* b0, int n0, float* y1, const void* b1, int n1,
    float* y2, const void* b2, int n2, int dtype, long long rows)
{
    const int z = blockIdx.y;
    float* y = z == 0 ? y0 : (z == 1 ? y1 : y2);
    const void* b = z == 0 ? b0 : (z == 1 ? b1 : b2);
    const int n = z == 0 ? n0 : (z == 1 ? n1 : n2);
    if (!b) return;
    FOR_N(i, rows * n) y[i] += load_w(b, dtype, i % n);
}

// x [rows, cols] -> dst [cols] (+)= column sums; one thread per column, so no atomics and a fixed order
extern "C" __global__ void sum_rows_f32(const float* x, float* dst, int rows, int cols, int accumulate)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.0f;
    for (int r = 0; r < rows; r++) s += x[(long long)r * cols + c];
    dst[c] = accumulate ? dst[c] + s : s;
}

// x [T, d]: x[row, :] += v [d]
extern "C" __global__ void add_to_row_f32(float* x, const float* v, int row, int d)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < d) x[(long long)row * d + c] += v[c];
}

// x [T, d] -> dst [d] (+)= x[row, :]
extern "C" __global__ void get_row_f32(const float* x, float* dst, int row, int d, int accumulate)
{
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= d) return;
    float v = x[(long long)row * d + c];
    dst[c] = accumulate ? dst[c] + v : v;
}

// src [n] stored as dtype -> dst [n] float32
extern "C" __global__ void widen_to_f32(const void* src, int dtype, float* dst, long long n)
{
    FOR_N(i, n) dst[i] = load_w(src, dtype, i);
}

// src [n] float32 -> dst [n] float16 (round to nearest even)
extern "C" __global__ void f32_to_f16(const float* src, unsigned short* dst, long long n)
{
    FOR_N(i, n) dst[i] = float_to_half(src[i]);
}

// src [n] float32 -> dst [n] bfloat16 (round to nearest even)
extern "C" __global__ void f32_to_bf16(const float* src, unsigned short* dst, long long n)
{
    FOR_N(i, n) dst[i] = float_to_bf16(src[i]);
}

// Deterministic uniform [-scale, scale) from a hash of (seed, i): splitmix64. Lets benchmarks make
// gigabytes of random weights on the device instead of uploading them.
static __device__ __forceinline__ float hash_uniform(unsigned long long seed, long long i)
{
    unsigned long long z = seed + (unsigned long long)i * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 8388608.0f) - 1.0f; // 24 bits -> [-1, 1)
}

// dst [n] stored as dtype = offset + uniform [-scale, scale)
extern "C" __global__ void fill_uniform(void* dst, int dtype, long long n, unsigned long long seed, float scale, float offset)
{
    FOR_N(i, n)
    {
        float v = offset + hash_uniform(seed, i) * scale;
        if (dtype == DT_F16) ((unsigned short*)dst)[i] = float_to_half(v);
        else if (dtype == DT_BF16) ((unsigned short*)dst)[i] = float_to_bf16(v);
        else ((float*)dst)[i] = v;
    }
}
