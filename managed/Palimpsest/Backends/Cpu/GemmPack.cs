using System.Runtime.Intrinsics;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// Packing for the blocked GEMM: copies a block of op(a) / op(b) into the order the micro-kernel
/// reads it (one contiguous sliver per MR rows / NR columns, k-major), zero-padding partial
/// slivers so the kernel never needs an edge case inside its loop.
/// </summary>
internal static unsafe class GemmPack
{
    private const int MR = Gemm.MR, NR = Gemm.NR;

    /// <summary>
    /// op(a) rows [i0, i0+mc), k [p0, p0+kc) -> dst [ceil(mc/MR)][kc][MR].
    /// a is [M, K] row stride lda, or [K, M] when trans.
    /// </summary>
    public static void PackA(bool trans, float* a, int lda, int i0, int p0, int mc, int kc, float* dst)
    {
        for (int ir = 0; ir < mc; ir += MR)
        {
            int mr = Math.Min(MR, mc - ir);
            float* d = dst + (long)ir * kc;
            if (trans)
            {
                // a[p, i]: the MR values of one k are contiguous.
                for (int p = 0; p < kc; p++)
                {
                    float* src = a + (long)(p0 + p) * lda + i0 + ir;
                    float* dp = d + p * MR;
                    int i = 0;
                    for (; i < mr; i++) dp[i] = src[i];
                    for (; i < MR; i++) dp[i] = 0;
                }
            }
            else
            {
                // a[i, p]: read each row contiguously, write with stride MR.
                for (int i = 0; i < MR; i++)
                {
                    if (i < mr)
                    {
                        float* src = a + (long)(i0 + ir + i) * lda + p0;
                        for (int p = 0; p < kc; p++) d[p * MR + i] = src[p];
                    }
                    else for (int p = 0; p < kc; p++) d[p * MR + i] = 0;
                }
            }
        }
    }

    /// <summary>
    /// op(b) k [p0, p0+kc), columns [j0, j0+nr) with nr ≤ NR -> dst [kc][NR].
    /// b is [K, N] row stride ldb, or [N, K] when trans.
    /// </summary>
    public static void PackB(bool trans, float* b, int ldb, int p0, int j0, int kc, int nr, float* dst)
    {
        if (!trans)
        {
            float* src = b + (long)p0 * ldb + j0;
            if (nr == NR)
            {
                for (int p = 0; p < kc; p++, src += ldb)
                {
                    Vector256.Store(Vector256.Load(src), dst + p * NR);
                    Vector256.Store(Vector256.Load(src + 8), dst + p * NR + 8);
                }
            }
            else
            {
                for (int p = 0; p < kc; p++, src += ldb)
                {
                    float* dp = dst + p * NR;
                    int j = 0;
                    for (; j < nr; j++) dp[j] = src[j];
                    for (; j < NR; j++) dp[j] = 0;
                }
            }
        }
        else
        {
            // b[j, p]: read each of the nr rows contiguously, write with stride NR.
            for (int j = 0; j < NR; j++)
            {
                if (j < nr)
                {
                    float* src = b + (long)(j0 + j) * ldb + p0;
                    for (int p = 0; p < kc; p++) dst[p * NR + j] = src[p];
                }
                else for (int p = 0; p < kc; p++) dst[p * NR + j] = 0;
            }
        }
    }
}
