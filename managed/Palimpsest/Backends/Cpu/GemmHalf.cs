using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// GEMM with a 16-bit b (bf16 or fp16 bit patterns, e.g. a checkpoint's memory map): b is widened
/// to float32 where it is read — in the B-panel packing of the blocked GEMM and in the streaming
/// loops of the GEMV — and every product accumulates in float32. Widening is exact, so the result
/// is that of <see cref="Sgemm(bool,bool,int,int,int,ReadOnlySpan{float},int,ReadOnlySpan{float},int,Span{float},int,bool)"/>
/// on the widened matrix up to summation order (the blocked path packs the same floats, so there
/// it is the same to the bit). The float32 kernels are untouched: the 16-bit work lives in separate
/// packing and GEMV loops chosen once per panel / per column chunk.
/// </summary>
public static partial class Gemm
{
    /// <summary>
    /// c [M, N] (+)= op(a) [M, K] · op(b) [K, N] with b 16-bit: stored [K, N] (row stride ldb), or
    /// [N, K] when transB; <paramref name="kind"/> is <see cref="DType.BF16"/> or <see cref="DType.F16"/>.
    /// </summary>
    public static void SgemmHalf(bool transA, bool transB, int M, int N, int K,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<ushort> b, int ldb, DType kind, Span<float> c, int ldc, bool accumulate)
    {
        SgemmHalf(transA, transB, M, N, K, a, lda, b, ldb, kind, c, ldc, accumulate, DefaultKernel, Environment.ProcessorCount);
    }

    /// <summary>As the public overload, with the kernel, the thread count and the workers chosen by the caller, and
    /// an epilogue (bias, residual, activation of a fused linear layer) applied to c once the product is done.</summary>
    internal static unsafe void SgemmHalf(bool transA, bool transB, int M, int N, int K,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<ushort> b, int ldb, DType kind, Span<float> c, int ldc, bool accumulate,
        GemmKernel kernel, int threads, SimdWorkers? workers = null, IGemmEpilogue? epilogue = null)
    {
        if (kind is not (DType.BF16 or DType.F16)) throw new ArgumentException($"SgemmHalf: b must be BF16 or F16, not {kind}");
        if (workers is not null) threads = Math.Min(threads, workers.Threads);
        bool done = CheckedAndTrivial(transA, transB, M, N, K, a.Length, lda, b.Length, ldb, c, ldc, accumulate); // c is final unless M, N, K > 0
        if (done) { }
        else if (!Avx2.IsSupported || !Fma.IsSupported)
        {
            // No 256-bit integer widening here: widen the whole of b once and take the float32 path.
            int rows = transB ? N : K, cols = transB ? K : N;
            var wide = new float[(long)rows * cols];
            for (int r = 0; r < rows; r++)
                for (int j = 0; j < cols; j++) wide[(long)r * cols + j] = HalfWiden.Scalar(kind, b[(int)((long)r * ldb + j)]);
            Sgemm(transA, transB, M, N, K, a, lda, wide, cols, c, ldc, accumulate, kernel, threads, workers, epilogue);
            return;
        }
        else
        {
            if ((long)M * N * K < ParallelThreshold) threads = 1;
            fixed (ushort* pb = b)
            {
                if (M == 1) GemvHalf(transA, transB, N, K, a, lda, pb, ldb, kind, c, accumulate, threads, workers);
                else SgemmBlocked(transA, transB, M, N, K, a, lda, ReadOnlySpan<float>.Empty, ldb, c, ldc, accumulate, kernel, threads, workers, pb, kind);
            }
        }
        if (epilogue is null || M == 0 || N == 0) return;
        fixed (float* pc = c) epilogue.Apply(pc, ldc, 0, M, 0, N);
    }

    /// <summary>The 16-bit twin of <see cref="Gemv"/>: c [1, N] (+)= a [1, K] · op(b), b read once in storage order.</summary>
    private static unsafe void GemvHalf(bool transA, bool transB, int N, int K, ReadOnlySpan<float> a, int lda,
        ushort* b, int ldb, DType kind, Span<float> c, bool accumulate, int threads, SimdWorkers? workers)
    {
        var scratch = GemmScratch.Acquire();
        try
        {
            fixed (float* pa0 = a, pc0 = c)
            {
                float* pa = ContiguousA(transA, pa0, lda, K, scratch);
                var job = scratch.GemvHalfJob;
                job.A = pa; job.B = b; job.C = pc0; job.Ldb = ldb; job.K = K; job.N = N; job.Kind = kind;
                job.TransB = transB; job.Accumulate = accumulate;
                int chunks = GemvChunks(transB, N, K, threads, scratch, out job.Per, out job.Partials);
                ParallelFor(workers, threads, chunks, job);
                AddPartials(transB, chunks, job.Partials, pc0, N);
            }
        }
        finally { GemmScratch.Release(scratch); }
    }

    /// <summary>One 16-bit GEMV, chunked as <see cref="GemvJob"/>: columns [t·Per, (t+1)·Per) of c for b [N, K]; rows [t·Per, (t+1)·Per) of b [K, N], chunk t > 0 into Partials[t − 1].</summary>
    internal sealed unsafe class GemvHalfJob : IParallelJob
    {
        public float* A, C, Partials;
        public ushort* B;
        public int Ldb, K, N, Per;
        public DType Kind;
        public bool TransB, Accumulate;

        public void Run(int t)
        {
            if (Kind == DType.BF16) Range<HalfWiden.Bf16>(t);
            else Range<HalfWiden.F16>(t);
        }

        private void Range<TW>(int t) where TW : struct, IHalfWiden =>
            RunGemvChunk(t, TransB, N, K, Per, A, B, Ldb, C, Partials, Accumulate, &GemvDotsHalf<TW>, &GemvAxpysHalf<TW>, &GemvFourRowAxpysHalf<TW>);
    }

    /// <summary>b [N, K] 16-bit (the decode step's Linear on an [out, in] file matrix): c[j] (+)= dot(a, b[j, :]) for j in [j0, j1), chosen as <see cref="GemvDots"/> chooses.</summary>
    private static unsafe void GemvDotsHalf<TW>(int j0, int j1, int K, float* a, ushort* b, int ldb, float* c, bool accumulate)
        where TW : struct, IHalfWiden
    {
        if (K <= GemvRowDotsMaxK) GemvRowDotsHalf<TW>(j0, j1, K, a, b, ldb, c, accumulate);
        else GemvFourRowDotsHalf<TW>(j0, j1, K, a, b, ldb, c, accumulate);
    }

    /// <summary>The 16-bit twin of <see cref="GemvRowDots"/>: one row of b after the other, four accumulators.</summary>
    private static unsafe void GemvRowDotsHalf<TW>(int j0, int j1, int K, float* a, ushort* b, int ldb, float* c, bool accumulate)
        where TW : struct, IHalfWiden
    {
        int k32 = K - K % 32, k8 = K - K % 8;
        for (int j = j0; j < j1; j++)
        {
            ushort* r = b + (long)j * ldb;
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            int k = 0;
            for (; k < k32; k += 32)
            {
                s0 = Fma.MultiplyAdd(Avx.LoadVector256(a + k), TW.Widen8(r + k), s0);
                s1 = Fma.MultiplyAdd(Avx.LoadVector256(a + k + 8), TW.Widen8(r + k + 8), s1);
                s2 = Fma.MultiplyAdd(Avx.LoadVector256(a + k + 16), TW.Widen8(r + k + 16), s2);
                s3 = Fma.MultiplyAdd(Avx.LoadVector256(a + k + 24), TW.Widen8(r + k + 24), s3);
            }
            for (; k < k8; k += 8) s0 = Fma.MultiplyAdd(Avx.LoadVector256(a + k), TW.Widen8(r + k), s0);
            float d = Vector256.Sum((s0 + s1) + (s2 + s3));
            for (; k < K; k++) d += a[k] * TW.Widen(r[k]);
            c[j] = accumulate ? c[j] + d : d;
        }
    }

    /// <summary>The 16-bit twin of <see cref="GemvFourRowDots"/>: four rows share each load of a.</summary>
    private static unsafe void GemvFourRowDotsHalf<TW>(int j0, int j1, int K, float* a, ushort* b, int ldb, float* c, bool accumulate)
        where TW : struct, IHalfWiden
    {
        int kv = K - K % 8;
        int j = j0;
        for (; j + 4 <= j1; j += 4)
        {
            ushort* r0 = b + (long)j * ldb, r1 = r0 + ldb, r2 = r1 + ldb, r3 = r2 + ldb;
            Vector256<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int k = 0; k < kv; k += 8)
            {
                var x = Avx.LoadVector256(a + k);
                s0 = Fma.MultiplyAdd(x, TW.Widen8(r0 + k), s0);
                s1 = Fma.MultiplyAdd(x, TW.Widen8(r1 + k), s1);
                s2 = Fma.MultiplyAdd(x, TW.Widen8(r2 + k), s2);
                s3 = Fma.MultiplyAdd(x, TW.Widen8(r3 + k), s3);
            }
            float d0 = Vector256.Sum(s0), d1 = Vector256.Sum(s1), d2 = Vector256.Sum(s2), d3 = Vector256.Sum(s3);
            for (int k = kv; k < K; k++)
            {
                d0 += a[k] * TW.Widen(r0[k]); d1 += a[k] * TW.Widen(r1[k]);
                d2 += a[k] * TW.Widen(r2[k]); d3 += a[k] * TW.Widen(r3[k]);
            }
            if (accumulate) { c[j] += d0; c[j + 1] += d1; c[j + 2] += d2; c[j + 3] += d3; }
            else { c[j] = d0; c[j + 1] = d1; c[j + 2] = d2; c[j + 3] = d3; }
        }
        for (; j < j1; j++)
        {
            ushort* r = b + (long)j * ldb;
            Vector256<float> s = default;
            for (int k = 0; k < kv; k += 8) s = Fma.MultiplyAdd(Avx.LoadVector256(a + k), TW.Widen8(r + k), s);
            float d = Vector256.Sum(s);
            for (int k = kv; k < K; k++) d += a[k] * TW.Widen(r[k]);
            c[j] = accumulate ? c[j] + d : d;
        }
    }

    /// <summary>The 16-bit twin of <see cref="GemvFourRowAxpys"/>: b [K, N], four rows of b per pass over c[j0..j1).</summary>
    private static unsafe void GemvFourRowAxpysHalf<TW>(int j0, int j1, int K, float* a, ushort* b, int ldb, float* c, bool accumulate)
        where TW : struct, IHalfWiden
    {
        int n = j1 - j0, nv = n - n % 8;
        float* y = c + j0;
        if (!accumulate) new Span<float>(y, n).Clear();
        int k = 0;
        for (; k + 4 <= K; k += 4)
        {
            ushort* r0 = b + (long)k * ldb + j0, r1 = r0 + ldb, r2 = r1 + ldb, r3 = r2 + ldb;
            var a0 = Vector256.Create(a[k]); var a1 = Vector256.Create(a[k + 1]);
            var a2 = Vector256.Create(a[k + 2]); var a3 = Vector256.Create(a[k + 3]);
            int j = 0;
            for (; j < nv; j += 8)
            {
                var acc = Avx.LoadVector256(y + j);
                acc = Fma.MultiplyAdd(a0, TW.Widen8(r0 + j), acc);
                acc = Fma.MultiplyAdd(a1, TW.Widen8(r1 + j), acc);
                acc = Fma.MultiplyAdd(a2, TW.Widen8(r2 + j), acc);
                acc = Fma.MultiplyAdd(a3, TW.Widen8(r3 + j), acc);
                Avx.Store(y + j, acc);
            }
            for (; j < n; j++)
                y[j] += a[k] * TW.Widen(r0[j]) + a[k + 1] * TW.Widen(r1[j]) + a[k + 2] * TW.Widen(r2[j]) + a[k + 3] * TW.Widen(r3[j]);
        }
        for (; k < K; k++)
        {
            ushort* r = b + (long)k * ldb + j0;
            var ak = Vector256.Create(a[k]);
            int j = 0;
            for (; j < nv; j += 8) Avx.Store(y + j, Fma.MultiplyAdd(ak, TW.Widen8(r + j), Avx.LoadVector256(y + j)));
            for (; j < n; j++) y[j] += a[k] * TW.Widen(r[j]);
        }
    }

    /// <summary>The 16-bit twin of <see cref="GemvAxpys"/>: b [K, N], one row of b per pass over c[j0..j1).</summary>
    private static unsafe void GemvAxpysHalf<TW>(int j0, int j1, int K, float* a, ushort* b, int ldb, float* c, bool accumulate)
        where TW : struct, IHalfWiden
    {
        int n = j1 - j0, n32 = n - n % 32, n8 = n - n % 8;
        float* y = c + j0;
        if (!accumulate) new Span<float>(y, n).Clear();
        for (int k = 0; k < K; k++)
        {
            ushort* r = b + (long)k * ldb + j0;
            var ak = Vector256.Create(a[k]);
            int j = 0;
            for (; j < n32; j += 32)
            {
                Avx.Store(y + j, Fma.MultiplyAdd(ak, TW.Widen8(r + j), Avx.LoadVector256(y + j)));
                Avx.Store(y + j + 8, Fma.MultiplyAdd(ak, TW.Widen8(r + j + 8), Avx.LoadVector256(y + j + 8)));
                Avx.Store(y + j + 16, Fma.MultiplyAdd(ak, TW.Widen8(r + j + 16), Avx.LoadVector256(y + j + 16)));
                Avx.Store(y + j + 24, Fma.MultiplyAdd(ak, TW.Widen8(r + j + 24), Avx.LoadVector256(y + j + 24)));
            }
            for (; j < n8; j += 8) Avx.Store(y + j, Fma.MultiplyAdd(ak, TW.Widen8(r + j), Avx.LoadVector256(y + j)));
            for (; j < n; j++) y[j] += a[k] * TW.Widen(r[j]);
        }
    }
}

/// <summary>Exact widening of one 16-bit float format to float32, as a type so that loops specialise on it (no per-element branch).</summary>
internal unsafe interface IHalfWiden
{
    /// <summary>8 consecutive values at p -> float32 (AVX2).</summary>
    static abstract Vector256<float> Widen8(ushort* p);

    /// <summary>One value.</summary>
    static abstract float Widen(ushort bits);
}

/// <summary>The two 16-bit formats checkpoints use.</summary>
internal static unsafe class HalfWiden
{
    public static float Scalar(DType kind, ushort bits) => kind == DType.BF16 ? Bf16.Convert(bits) : F16.Convert(bits);

    /// <summary>bf16 is the top half of a float32: shift left by 16.</summary>
    public readonly struct Bf16 : IHalfWiden
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen8(ushort* p) =>
            Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(Sse2.LoadVector128(p)), 16).AsSingle();

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Widen(ushort bits) => Convert(bits);

        public static float Convert(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);
    }

    /// <summary>
    /// IEEE half: the exponent and mantissa moved into float32 position and scaled by 2^112 (0x77800000)
    /// (rebiases normals and normalises subnormals exactly, since the product of a float and a power
    /// of two is exact); infinities and NaNs get the all-ones exponent back; then the sign.
    /// </summary>
    public readonly struct F16 : IHalfWiden
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Widen8(ushort* p)
        {
            var h = Avx2.ConvertToVector256Int32(Sse2.LoadVector128(p)).AsUInt32();
            var em = Avx2.ShiftLeftLogical(h & Vector256.Create(0x7FFFu), 13);
            var scaled = (em.AsSingle() * Vector256.Create(0x7780_0000u).AsSingle()).AsUInt32();
            var infNan = Vector256.Equals(h & Vector256.Create(0x7C00u), Vector256.Create(0x7C00u)) & Vector256.Create(0x7F80_0000u);
            var sign = Avx2.ShiftLeftLogical(h & Vector256.Create(0x8000u), 16);
            return (scaled | infNan | sign).AsSingle();
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static float Widen(ushort bits) => Convert(bits);

        public static float Convert(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);
    }
}
