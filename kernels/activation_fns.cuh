// Activation functions (and derivatives) shared by activations.cu, the fused bias/activation
// epilogues (elementwise.cu) and the matrix-vector kernels (gemv.cu).
#pragma once
#include "common.cuh"

// Order of managed Palimpsest.Backends.Activation.
#define ACT_GELU_TANH 0
#define ACT_GELU_ERF 1
#define ACT_RELU 2
#define ACT_SILU 3

#define GELU_C 0.7978845608028654f  // sqrt(2/pi)
#define GELU_A 0.044715f
#define INV_SQRT2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

// erfc(z) for z >= 0 with fractional error < 1.2e-7 (Numerical Recipes' erfcc, Chebyshev fit);
// used instead of 1 + erf so that the far negative tail of gelu keeps its relative accuracy.
static __device__ __forceinline__ float erfc_pos(float z)
{
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = -z * z - 1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f
        + t * (0.27886807f + t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
    return t * expf(p);
}

// 2 * Phi(x) = 1 + erf(x / sqrt2) = erfc(-x / sqrt2)
static __device__ __forceinline__ float two_phi(float x)
{
    float z = -x * INV_SQRT2;
    return z >= 0.0f ? erfc_pos(z) : 2.0f - erfc_pos(-z);
}

static __device__ __forceinline__ float act_f(int act, float x)
{
    switch (act)
    {
    case ACT_GELU_TANH:
    {
        // 0.5 x (1 + tanh(u)) = x * sigmoid(2u): no cancellation for negative x
        float u = GELU_C * (x + GELU_A * x * x * x);
        return x * sigmoidf_(2.0f * u);
    }
    case ACT_GELU_ERF: return 0.5f * x * two_phi(x);
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    default: return x * sigmoidf_(x);
    }
}

static __device__ __forceinline__ float act_df(int act, float x)
{
    switch (act)
    {
    case ACT_GELU_TANH:
    {
        float u = GELU_C * (x + GELU_A * x * x * x);
        float s = sigmoidf_(2.0f * u);
        return s + x * 2.0f * s * (1.0f - s) * GELU_C * (1.0f + 3.0f * GELU_A * x * x);
    }
    case ACT_GELU_ERF: return 0.5f * two_phi(x) + x * expf(-0.5f * x * x) * INV_SQRT_2PI;
    case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
    default:
    {
        float s = sigmoidf_(x);
        return s * (1.0f + x * (1.0f - s));
    }
    }
}
