// Rotary position embedding, in place. The backward is the same kernel with the angle negated.
#include "common.cuh"

// x [T, heads*headDim] in place; cosT, sinT [P, rotaryDim/2] precomputed on the host (RopeTable)
// (row = absolute position), so large positions keep full accuracy. One thread per (t, head, pair).
// interleaved: pairs (2i, 2i+1) (GPT-J); else (i, i + rotaryDim/2) (GPT-NeoX, Llama).
extern "C" __global__ void rope(float* x, const float* cosT, const float* sinT, int T, int heads, int headDim,
    int rotaryDim, int interleaved, int posOffset, int inverse)
{
    int half = rotaryDim / 2;
    FOR_N(idx, (long long)T * heads * half)
    {
        int i = (int)(idx % half);
        long long th = idx / half;          // t * heads + h
        int t = (int)(th / heads);
        float* base = x + th * headDim;
        long long ti = (long long)(posOffset + t) * half + i;
        float c = cosT[ti], s = inverse ? -sinT[ti] : sinT[ti];
        int ia = interleaved ? 2 * i : i;
        int ib = interleaved ? 2 * i + 1 : i + half;
        float a = base[ia], b = base[ib];
        base[ia] = a * c - b * s;
        base[ib] = a * s + b * c;
    }
}
