// Activations (gelu tanh / erf, relu, silu) and SwiGLU, forward and backward. Elementwise over n.
#include "activation_fns.cuh"

// x [n] -> y [n] = act(x)
extern "C" __global__ void activate(int act, const float* x, float* y, long long n)
{
    FOR_N(i, n) y[i] = act_f(act, x[i]);
}

// x, dy [n] -> dx [n] = act'(x) * dy (overwrites)
extern "C" __global__ void activate_backward(int act, const float* x, const float* dy, float* dx, long long n)
{
    FOR_N(i, n) dx[i] = act_df(act, x[i]) * dy[i];
}

// gate, up [n] -> y [n] = silu(gate) * up
extern "C" __global__ void silu_mul(const float* gate, const float* up, float* y, long long n)
{
    FOR_N(i, n) y[i] = gate[i] * sigmoidf_(gate[i]) * up[i];
}

// gate, up, dy [n] -> dgate = dy * up * silu'(gate), dup = dy * silu(gate) (overwritten)
extern "C" __global__ void silu_mul_backward(const float* gate, const float* up, const float* dy, float* dgate, float* dup, long long n)
{
    FOR_N(i, n)
    {
        float g = gate[i], s = sigmoidf_(g);
        dgate[i] = dy[i] * up[i] * s * (1.0f + g * (1.0f - s));
        dup[i] = dy[i] * g * s;
    }
}
