// Token embedding (+ learned positions) and its backward.
#include "common.cuh"

// ids [T], wte [V, d] (dtype wteType), wpe [P, d] (dtype wpeType) or null -> dst [T, d];
// row t adds wpe[posOffset + t]. The launcher has checked ids and positions. Grid T, block BLOCK.
extern "C" __global__ void embed(const int* ids, const void* wte, int wteType, const void* wpe, int wpeType,
    int posOffset, float* dst, int d)
{
    int t = blockIdx.x;
    long long id = ids[t];
    long long pos = (long long)posOffset + t;
    for (int c = threadIdx.x; c < d; c += blockDim.x)
    {
        float v = load_w(wte, wteType, id * d + c);
        if (wpe) v += load_w(wpe, wpeType, pos * d + c);
        dst[(long long)t * d + c] = v;
    }
}

// ids [T], dy [T, d] -> dwte [V, d] += scatter, dwpe [P, d] += (dwpe may be null). Ids repeat, so
// atomics; one thread per element of dy.
extern "C" __global__ void embed_backward(const int* ids, const float* dy, float* dwte, float* dwpe, int posOffset, int T, int d)
{
    FOR_N(i, (long long)T * d)
    {
        long long t = i / d, c = i % d;
        atomicAdd(&dwte[(long long)ids[t] * d + c], dy[i]);
        if (dwpe) atomicAdd(&dwpe[(posOffset + t) * d + c], dy[i]);
    }
}
