using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

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
            int p = 0;
            if (nr == NR && Avx.IsSupported)
            {
                // 8x8 register transposes: eight rows of b (columns of op(b)) by eight k at a time.
                for (; p + 8 <= kc; p += 8)
                {
                    float* src = b + (long)j0 * ldb + p0 + p;
                    Transpose8x8(src, ldb, dst + p * NR, NR);
                    Transpose8x8(src + 8L * ldb, ldb, dst + p * NR + 8, NR);
                }
                if (p == kc) return;
            }
            // b[j, p]: read each of the nr rows contiguously, write with stride NR.
            for (int j = 0; j < NR; j++)
            {
                if (j < nr)
                {
                    float* src = b + (long)(j0 + j) * ldb + p0;
                    for (int q = p; q < kc; q++) dst[q * NR + j] = src[q];
                }
                else for (int q = p; q < kc; q++) dst[q * NR + j] = 0;
            }
        }
    }

    /// <summary>
    /// <see cref="PackB"/> for a 16-bit b (<typeparamref name="TW"/> widens it): the same dst [kc][NR]
    /// holding the same floats the float32 packing of the widened matrix would hold.
    /// </summary>
    public static void PackBHalf<TW>(bool trans, ushort* b, int ldb, int p0, int j0, int kc, int nr, float* dst)
        where TW : struct, IHalfWiden
    {
        if (!trans)
        {
            // b[p, j0..j0+nr): one row of the panel per k, widened straight into place.
            ushort* src = b + (long)p0 * ldb + j0;
            for (int p = 0; p < kc; p++, src += ldb)
            {
                float* dp = dst + p * NR;
                if (nr == NR)
                {
                    Avx.Store(dp, TW.Widen8(src));
                    Avx.Store(dp + 8, TW.Widen8(src + 8));
                    continue;
                }
                int j = 0;
                for (; j < nr; j++) dp[j] = TW.Widen(src[j]);
                for (; j < NR; j++) dp[j] = 0;
            }
            return;
        }
        // b[j, p]: widen the nr rows (k contiguous) into a [nr][kc] float block, then pack that
        // with the float32 transposing path (its 8x8 register transposes).
        float* rows = stackalloc float[NR * Gemm.KC];
        for (int j = 0; j < nr; j++)
        {
            ushort* src = b + (long)(j0 + j) * ldb + p0;
            float* d = rows + j * kc;
            int q = 0;
            for (; q + 8 <= kc; q += 8) Avx.Store(d + q, TW.Widen8(src + q));
            for (; q < kc; q++) d[q] = TW.Widen(src[q]);
        }
        PackB(true, rows, kc, 0, 0, kc, nr, dst);
    }

    /// <summary>
    /// b [K, N] (not transposed), rows [p0 + r0, p0 + r1) and columns [j0, j0 + nc) -> row p of
    /// every NR-column panel: panel jp starts at dst + jp·panelStride, its row p at + p·NR; the
    /// last panel is zero-padded past nc. Reads each row of b in storage order: packing panel by
    /// panel instead reads NR values from every row, ldb floats apart, and with ldb a multiple of
    /// 256 floats (768, 2304, 3072) those rows share a handful of cache sets — that packing took
    /// half the time of a 128x768x2304 product.
    /// </summary>
    public static void PackBRows(float* b, int ldb, int p0, int j0, int r0, int r1, int nc, float* dst, long panelStride)
    {
        int full = nc / NR, rem = nc - full * NR;
        for (int p = r0; p < r1; p++)
        {
            float* src = b + (long)(p0 + p) * ldb + j0;
            float* d = dst + (long)p * NR;
            for (int jp = 0; jp < full; jp++, src += NR, d += panelStride)
            {
                Vector256.Store(Vector256.Load(src), d);
                Vector256.Store(Vector256.Load(src + 8), d + 8);
            }
            if (rem == 0) continue;
            int j = 0;
            for (; j < rem; j++) d[j] = src[j];
            for (; j < NR; j++) d[j] = 0;
        }
    }

    /// <summary>src [8 rows, stride lds] of 8 floats -> dst rows k (stride NR) holding column k of src.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static void Transpose8x8(float* src, int lds, float* dst, int ldd)
    {
        var r0 = Avx.LoadVector256(src); var r1 = Avx.LoadVector256(src + lds);
        var r2 = Avx.LoadVector256(src + 2L * lds); var r3 = Avx.LoadVector256(src + 3L * lds);
        var r4 = Avx.LoadVector256(src + 4L * lds); var r5 = Avx.LoadVector256(src + 5L * lds);
        var r6 = Avx.LoadVector256(src + 6L * lds); var r7 = Avx.LoadVector256(src + 7L * lds);
        var t0 = Avx.UnpackLow(r0, r1); var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3); var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5); var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7); var t7 = Avx.UnpackHigh(r6, r7);
        var s0 = Avx.Shuffle(t0, t2, 0x44); var s1 = Avx.Shuffle(t0, t2, 0xEE);
        var s2 = Avx.Shuffle(t1, t3, 0x44); var s3 = Avx.Shuffle(t1, t3, 0xEE);
        var s4 = Avx.Shuffle(t4, t6, 0x44); var s5 = Avx.Shuffle(t4, t6, 0xEE);
        var s6 = Avx.Shuffle(t5, t7, 0x44); var s7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(s0, s4, 0x20));
        Avx.Store(dst + ldd, Avx.Permute2x128(s1, s5, 0x20));
        Avx.Store(dst + 2 * ldd, Avx.Permute2x128(s2, s6, 0x20));
        Avx.Store(dst + 3 * ldd, Avx.Permute2x128(s3, s7, 0x20));
        Avx.Store(dst + 4 * ldd, Avx.Permute2x128(s0, s4, 0x31));
        Avx.Store(dst + 5 * ldd, Avx.Permute2x128(s1, s5, 0x31));
        Avx.Store(dst + 6 * ldd, Avx.Permute2x128(s2, s6, 0x31));
        Avx.Store(dst + 7 * ldd, Avx.Permute2x128(s3, s7, 0x31));
    }
}
