using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// GEMM micro-kernels: c [MR, NR] (+)= Σ_p a[p, 0..MR) ⊗ b[p, 0..NR) over packed slivers
/// (a [kc][MR], b [kc][NR], see <see cref="GemmPack"/>); c has row stride ldc.
/// </summary>
internal static unsafe class GemmKernels
{
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Run(GemmKernel kernel, int kc, float* a, float* b, float* c, int ldc, bool accumulate)
    {
        if (kernel == GemmKernel.Fma256) Fma6x16(kc, a, b, c, ldc, accumulate);
        else Portable6x16(kc, a, b, c, ldc, accumulate);
    }

    /// <summary>
    /// 6x16 tile in 12 Vector256 accumulators: per k two loads of b, six broadcasts of a and twelve
    /// FMAs, which keeps both FMA pipes busy with the 16 (AVX2) registers x86 has.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Fma6x16(int kc, float* a, float* b, float* c, int ldc, bool accumulate)
    {
        // Start pulling the C tile in now: it is touched only after the k loop, and a miss there
        // would stall the kernel with nothing else to do.
        for (int i = 0; i < Gemm.MR; i++)
        {
            Sse.Prefetch0(c + (long)i * ldc);
            Sse.Prefetch0(c + (long)i * ldc + Gemm.NR - 1);
        }
        Vector256<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector256<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx.LoadAlignedVector256(b);
            var b1 = Avx.LoadAlignedVector256(b + 8);
            var x = Vector256.Create(a[0]);
            c00 = Fma.MultiplyAdd(x, b0, c00); c01 = Fma.MultiplyAdd(x, b1, c01);
            x = Vector256.Create(a[1]);
            c10 = Fma.MultiplyAdd(x, b0, c10); c11 = Fma.MultiplyAdd(x, b1, c11);
            x = Vector256.Create(a[2]);
            c20 = Fma.MultiplyAdd(x, b0, c20); c21 = Fma.MultiplyAdd(x, b1, c21);
            x = Vector256.Create(a[3]);
            c30 = Fma.MultiplyAdd(x, b0, c30); c31 = Fma.MultiplyAdd(x, b1, c31);
            x = Vector256.Create(a[4]);
            c40 = Fma.MultiplyAdd(x, b0, c40); c41 = Fma.MultiplyAdd(x, b1, c41);
            x = Vector256.Create(a[5]);
            c50 = Fma.MultiplyAdd(x, b0, c50); c51 = Fma.MultiplyAdd(x, b1, c51);
            a += Gemm.MR;
            b += Gemm.NR;
        }
        Store(c, c00, c01, accumulate); c += ldc;
        Store(c, c10, c11, accumulate); c += ldc;
        Store(c, c20, c21, accumulate); c += ldc;
        Store(c, c30, c31, accumulate); c += ldc;
        Store(c, c40, c41, accumulate); c += ldc;
        Store(c, c50, c51, accumulate);
    }

    /// <summary>
    /// 8x32 tile in 16 Vector512 accumulators (AVX-512: 32 registers), for the prepacked GEMM: per k
    /// two loads of b, eight broadcasts of a and sixteen FMAs: half the loads per FMA of the 6x16
    /// tile. a is [kc][8], b a panel [kc][32] (64-byte aligned).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Avx512x8x32(int kc, float* a, float* b, float* c, int ldc, bool accumulate)
    {
        for (int i = 0; i < Gemm.MR8; i++)
        {
            Sse.Prefetch0(c + (long)i * ldc);
            Sse.Prefetch0(c + (long)i * ldc + 31);
        }
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default, c20 = default, c21 = default;
        Vector512<float> c30 = default, c31 = default, c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default;
        for (int p = 0; p < kc; p++)
        {
            var b0 = Avx512F.LoadAlignedVector512(b);
            var b1 = Avx512F.LoadAlignedVector512(b + 16);
            var x = Vector512.Create(a[0]);
            c00 = Avx512F.FusedMultiplyAdd(x, b0, c00); c01 = Avx512F.FusedMultiplyAdd(x, b1, c01);
            x = Vector512.Create(a[1]);
            c10 = Avx512F.FusedMultiplyAdd(x, b0, c10); c11 = Avx512F.FusedMultiplyAdd(x, b1, c11);
            x = Vector512.Create(a[2]);
            c20 = Avx512F.FusedMultiplyAdd(x, b0, c20); c21 = Avx512F.FusedMultiplyAdd(x, b1, c21);
            x = Vector512.Create(a[3]);
            c30 = Avx512F.FusedMultiplyAdd(x, b0, c30); c31 = Avx512F.FusedMultiplyAdd(x, b1, c31);
            x = Vector512.Create(a[4]);
            c40 = Avx512F.FusedMultiplyAdd(x, b0, c40); c41 = Avx512F.FusedMultiplyAdd(x, b1, c41);
            x = Vector512.Create(a[5]);
            c50 = Avx512F.FusedMultiplyAdd(x, b0, c50); c51 = Avx512F.FusedMultiplyAdd(x, b1, c51);
            x = Vector512.Create(a[6]);
            c60 = Avx512F.FusedMultiplyAdd(x, b0, c60); c61 = Avx512F.FusedMultiplyAdd(x, b1, c61);
            x = Vector512.Create(a[7]);
            c70 = Avx512F.FusedMultiplyAdd(x, b0, c70); c71 = Avx512F.FusedMultiplyAdd(x, b1, c71);
            a += Gemm.MR8;
            b += PackedWeight.NR;
        }
        Store(c, c00, c01, accumulate); c += ldc;
        Store(c, c10, c11, accumulate); c += ldc;
        Store(c, c20, c21, accumulate); c += ldc;
        Store(c, c30, c31, accumulate); c += ldc;
        Store(c, c40, c41, accumulate); c += ldc;
        Store(c, c50, c51, accumulate); c += ldc;
        Store(c, c60, c61, accumulate); c += ldc;
        Store(c, c70, c71, accumulate);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector512<float> v0, Vector512<float> v1, bool accumulate)
    {
        if (accumulate)
        {
            v0 += Vector512.Load(c);
            v1 += Vector512.Load(c + 16);
        }
        Vector512.Store(v0, c);
        Vector512.Store(v1, c + 16);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store(float* c, Vector256<float> v0, Vector256<float> v1, bool accumulate)
    {
        if (accumulate)
        {
            v0 += Vector256.Load(c);
            v1 += Vector256.Load(c + 8);
        }
        Vector256.Store(v0, c);
        Vector256.Store(v1, c + 8);
    }

    /// <summary>
    /// The same tile with Vector128 multiply-then-add (no FMA): runs on any CPU .NET runs on.
    /// Three rows at a time so the 12 accumulators fit 16 SSE registers.
    /// </summary>
    private static void Portable6x16(int kc, float* a, float* b, float* c, int ldc, bool accumulate)
    {
        for (int r0 = 0; r0 < Gemm.MR; r0 += 3)
        {
            Vector128<float> c00 = default, c01 = default, c02 = default, c03 = default;
            Vector128<float> c10 = default, c11 = default, c12 = default, c13 = default;
            Vector128<float> c20 = default, c21 = default, c22 = default, c23 = default;
            float* ap = a + r0, bp = b;
            for (int p = 0; p < kc; p++, ap += Gemm.MR, bp += Gemm.NR)
            {
                var b0 = Vector128.Load(bp); var b1 = Vector128.Load(bp + 4);
                var b2 = Vector128.Load(bp + 8); var b3 = Vector128.Load(bp + 12);
                var x = Vector128.Create(ap[0]);
                c00 += x * b0; c01 += x * b1; c02 += x * b2; c03 += x * b3;
                x = Vector128.Create(ap[1]);
                c10 += x * b0; c11 += x * b1; c12 += x * b2; c13 += x * b3;
                x = Vector128.Create(ap[2]);
                c20 += x * b0; c21 += x * b1; c22 += x * b2; c23 += x * b3;
            }
            float* cr = c + (long)r0 * ldc;
            Store(cr, c00, c01, c02, c03, accumulate);
            Store(cr + ldc, c10, c11, c12, c13, accumulate);
            Store(cr + 2L * ldc, c20, c21, c22, c23, accumulate);
        }
    }

    private static void Store(float* c, Vector128<float> v0, Vector128<float> v1, Vector128<float> v2, Vector128<float> v3, bool accumulate)
    {
        if (accumulate)
        {
            v0 += Vector128.Load(c); v1 += Vector128.Load(c + 4);
            v2 += Vector128.Load(c + 8); v3 += Vector128.Load(c + 12);
        }
        Vector128.Store(v0, c); Vector128.Store(v1, c + 4);
        Vector128.Store(v2, c + 8); Vector128.Store(v3, c + 12);
    }
}
