using System.Runtime.Intrinsics.X86;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// Single-precision matrix multiply, row-major: c [M, N] (+)= op(a) [M, K] · op(b) [K, N].
/// a is stored [M, K] (row stride lda), or [K, M] when transA; b is stored [K, N] (row stride
/// ldb), or [N, K] when transB; c is [M, N] with row stride ldc.
///
/// <see cref="Sgemm"/> is the fast path (Goto/BLIS-style: packed panels, a register-tiled FMA
/// micro-kernel, blocks spread over the cores); <see cref="SgemmNaive"/> is the plain triple loop
/// it is tested against. Thread-safe: scratch buffers are per thread (see <see cref="GemmScratch"/>).
/// </summary>
public static partial class Gemm
{
    /// <summary>Below this many multiply-adds the work is done on the calling thread alone:
    /// waking the pool costs more than it saves.</summary>
    internal const long ParallelThreshold = 1L << 18;

    /// <summary>
    /// c [M, N] (+)= op(a) [M, K] · op(b) [K, N]; accumulate adds into c, else c is overwritten.
    /// </summary>
    public static void Sgemm(bool transA, bool transB, int M, int N, int K,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, bool accumulate)
    {
        Sgemm(transA, transB, M, N, K, a, lda, b, ldb, c, ldc, accumulate, DefaultKernel, Environment.ProcessorCount);
    }

    /// <summary>The micro-kernel this CPU runs: FMA on 256-bit vectors where available.</summary>
    internal static GemmKernel DefaultKernel => Fma.IsSupported && Avx2.IsSupported ? GemmKernel.Fma256 : GemmKernel.Portable;

    /// <summary>
    /// Same as the public overload with the kernel and the thread count chosen by the caller (tests
    /// use it to exercise the portable fallback on an FMA machine). Parallel loops run on
    /// <paramref name="workers"/> when given (threads is then capped at its size), else on Parallel.For.
    /// </summary>
    internal static unsafe void Sgemm(bool transA, bool transB, int M, int N, int K,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, bool accumulate,
        GemmKernel kernel, int threads, SimdWorkers? workers = null, IGemmEpilogue? epilogue = null)
    {
        if (workers is not null) threads = Math.Min(threads, workers.Threads);
        bool done = CheckedAndTrivial(transA, transB, M, N, K, a.Length, lda, b.Length, ldb, c, ldc, accumulate); // c is final unless M, N, K > 0
        if (M == 0 || N == 0) return;
        if ((long)M * N * K < ParallelThreshold) threads = 1;
        if (done) { }
        else if (M == 1) Gemv(transA, transB, N, K, a, lda, b, ldb, c, accumulate, threads, workers);
        else if (UseShortM(M, N, K))
        {
            // the short-M path applies the epilogue per column group, on the thread that made it
            SgemmShortM(transA, transB, M, N, K, a, lda, b, ldb, c, ldc, accumulate, kernel, threads, workers, epilogue);
            return;
        }
        else SgemmBlocked(transA, transB, M, N, K, a, lda, b, ldb, c, ldc, accumulate, kernel, threads, workers);
        if (epilogue is null) return;
        fixed (float* pc = c) epilogue.Apply(pc, ldc, 0, M, 0, N);
    }

    /// <summary>job.Run(i) for i in [0, count) on the workers, on Parallel.For, or inline with one thread.</summary>
    internal static void ParallelFor(SimdWorkers? workers, int threads, int count, IParallelJob job)
    {
        if (count <= 1 || threads <= 1)
            for (int i = 0; i < count; i++) job.Run(i);
        else if (workers is not null) workers.For(count, job);
        else Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, job.Run);
    }

    /// <summary>Reference: c [M, N] (+)= op(a) · op(b), one element at a time with a float64 running sum
    /// (so it is the more accurate of the two and test tolerances measure the fast path alone).</summary>
    public static void SgemmNaive(bool transA, bool transB, int M, int N, int K,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, bool accumulate)
    {
        CheckArgs(transA, transB, M, N, K, a.Length, lda, b.Length, ldb, c.Length, ldc);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++)
            {
                double s = 0;
                for (int p = 0; p < K; p++)
                {
                    float x = transA ? a[p * lda + i] : a[i * lda + p];
                    float y = transB ? b[j * ldb + p] : b[p * ldb + j];
                    s += (double)x * y;
                }
                c[i * ldc + j] = (float)(accumulate ? c[i * ldc + j] + s : s);
            }
    }

    /// <summary>Checks the operands; true when nothing is left to multiply (an empty c, or K = 0: c cleared unless accumulating).</summary>
    private static bool CheckedAndTrivial(bool transA, bool transB, int M, int N, int K,
        int aLen, int lda, int bLen, int ldb, Span<float> c, int ldc, bool accumulate)
    {
        CheckArgs(transA, transB, M, N, K, aLen, lda, bLen, ldb, c.Length, ldc);
        if (M == 0 || N == 0) return true;
        if (K != 0) return false;
        if (!accumulate) for (int i = 0; i < M; i++) c.Slice(i * ldc, N).Clear();
        return true;
    }

    private static void CheckArgs(bool transA, bool transB, int M, int N, int K,
        int aLen, int lda, int bLen, int ldb, int cLen, int ldc)
    {
        if (M < 0 || N < 0 || K < 0) throw new ArgumentException($"negative GEMM size M={M} N={N} K={K}");
        int aRows = transA ? K : M, aCols = transA ? M : K;
        int bRows = transB ? N : K, bCols = transB ? K : N;
        CheckMatrix("a", aRows, aCols, aLen, lda);
        CheckMatrix("b", bRows, bCols, bLen, ldb);
        CheckMatrix("c", M, N, cLen, ldc);
    }

    private static void CheckMatrix(string name, int rows, int cols, int len, int ld)
    {
        if (rows == 0 || cols == 0) return;
        if (ld < cols) throw new ArgumentException($"GEMM {name}: leading dimension {ld} < columns {cols}");
        long need = (long)(rows - 1) * ld + cols;
        if (len < need) throw new ArgumentException($"GEMM {name}: [{rows}, {cols}] with ld {ld} needs {need} elements, span has {len}");
    }
}

/// <summary>Which micro-kernel the blocked GEMM runs.</summary>
internal enum GemmKernel
{
    /// <summary>6x16 tile of Vector256 FMAs (x86 AVX2 + FMA3).</summary>
    Fma256,
    /// <summary>Vector128 multiply then add (any CPU; SSE / AdvSIMD or software).</summary>
    Portable,
}
