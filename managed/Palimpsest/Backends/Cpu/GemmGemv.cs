using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.Arm;
using System.Runtime.Intrinsics.X86;

namespace Palimpsest.Backends.Cpu;

public static partial class Gemm
{
    /// <summary>
    /// Most columns of c one thread updates per sweep over its rows of b [K, N] (256 KiB of c, within
    /// L2). N is cut into equal blocks no wider than this. Narrower blocks cut b's rows into short
    /// streams and were slower: 1×4096×14336 bf16 ran at 16.5 GB/s in blocks of 8192, 19.9 whole.
    /// </summary>
    private const int GemvColumnBlock = 65536;

    /// <summary>
    /// Widest column block for which the axpys (b [K, N]) take one row of b per pass over c: then c
    /// (at most 16 KiB) stays in L1 and b is read as one forward stream, where four rows per pass
    /// read four short streams at once (1×3072×768 bf16: 21.1 against 8.8 GB/s). Wider, the rows
    /// are long streams of their own and four rows per pass save three quarters of the traffic
    /// over c, which no longer fits L1 (1×1600×6400 bf16: 24.2 against 15.6 GB/s).
    /// </summary>
    private const int GemvRowAxpyMaxN = 4096;

    /// <summary>
    /// Largest K for which the dots (b [N, K]) take one row of b at a time. Then b is read as one
    /// forward stream, which the prefetchers follow at full speed, while four rows at a time make
    /// four streams a few cache lines long each, which they hardly follow: GPT-2's tied head
    /// (1×768×50257, bf16) ran at 8.8 against 21.9 GB/s. Past 2048 the rows are long enough for
    /// four streams, and a [K] (over 8 KiB) would be re-read per row from beyond L1: at K = 4096
    /// four rows were the faster (29.9 against 22.3 GB/s). Measured in bench/RESULTS.md.
    /// </summary>
    private const int GemvRowDotsMaxK = 2048;

    /// <summary>Width of each of the equal column blocks <see cref="GemvJob"/> sweeps for c [N] (a multiple of 16 floats).</summary>
    private static int GemvBlockWidth(int N)
    {
        int blocks = Math.Max(1, (N + GemvColumnBlock - 1) / GemvColumnBlock);
        return ((N + blocks - 1) / blocks + 15) / 16 * 16;
    }

    /// <summary>
    /// M = 1 (one token's decode step): c [1, N] (+)= a [1, K] · op(b) [K, N]. Memory bound, so
    /// each element of b is read exactly once, in storage order, split over the threads as
    /// <see cref="GemvChunks"/> says.
    /// </summary>
    private static unsafe void Gemv(bool transA, bool transB, int N, int K, ReadOnlySpan<float> a, int lda,
        ReadOnlySpan<float> b, int ldb, Span<float> c, bool accumulate, int threads, SimdWorkers? workers)
    {
        var scratch = GemmScratch.Acquire();
        try
        {
            fixed (float* pa0 = a, pb0 = b, pc0 = c)
            {
                float* pa = ContiguousA(transA, pa0, lda, K, scratch);
                var job = scratch.GemvJob;
                job.A = pa; job.B = pb0; job.C = pc0; job.Ldb = ldb; job.K = K; job.N = N;
                job.TransB = transB; job.Accumulate = accumulate;
                int chunks = GemvChunks(transB, N, K, threads, scratch, out job.Per, out job.Partials);
                ParallelFor(workers, threads, chunks, job);
                AddPartials(transB, chunks, job.Partials, pc0, N);
            }
        }
        finally { GemmScratch.Release(scratch); }
    }

    /// <summary>
    /// How a GEMV of c [1, N] over b is split (float32 and 16-bit alike); returns the chunk count.
    /// b [N, K] (transB): chunks of rows of b, i.e. of columns of c, <paramref name="per"/> columns
    /// each — every one a contiguous stretch of b, in whole cache lines of c so that no two threads
    /// write one. b [K, N]: chunks of <paramref name="per"/> rows of b (of k), so each thread streams
    /// one contiguous stretch as well; splitting the columns instead makes every thread read a short
    /// piece of every row, which the prefetchers follow badly (1x3072x768 ran at half the bandwidth
    /// of the [N, K] case). Chunk t > 0 then sums into partials[t − 1] [N], added by <see cref="AddPartials"/>.
    /// </summary>
    private static unsafe int GemvChunks(bool transB, int N, int K, int threads, GemmScratch scratch, out int per, out float* partials)
    {
        partials = null;
        if (transB)
        {
            const int w = 128; // floats: whole cache lines of c
            int chunks = Math.Max(1, Math.Min(threads, (N + w - 1) / w));
            per = ((N + chunks - 1) / chunks + w - 1) / w * w;
            return chunks;
        }
        int kChunks = Math.Max(1, Math.Min(threads, K / GemvMinRows));
        per = (K + kChunks - 1) / kChunks;
        if (kChunks > 1) partials = scratch.Partials((long)(kChunks - 1) * N);
        return kChunks;
    }

    /// <summary>c [N] += Σ partial rows of the chunks after the first (b [K, N] only).</summary>
    private static unsafe void AddPartials(bool transB, int chunks, float* partials, float* c, int N)
    {
        if (transB) return;
        var y = new Span<float>(c, N);
        for (int t = 1; t < chunks; t++)
            System.Numerics.Tensors.TensorPrimitives.Add(y, new ReadOnlySpan<float>(partials + (long)(t - 1) * N, N), y);
    }

    /// <summary>a [1, K] contiguous: itself, or — stored [K, 1] with stride lda — gathered into scratch so the inner loops read it in order.</summary>
    private static unsafe float* ContiguousA(bool transA, float* a, int lda, int K, GemmScratch scratch)
    {
        if (!transA || lda == 1) return a;
        float* g = scratch.Vector(K);
        for (int k = 0; k < K; k++) g[k] = a[(long)k * lda];
        return g;
    }

    /// <summary>Rows of b [K, N] below which a GEMV chunk is not worth a thread of its own.</summary>
    private const int GemvMinRows = 64;

    /// <summary>
    /// One GEMV. transB (b [N, K]): chunk t is columns [t·Per, (t+1)·Per) of c. Else (b [K, N]):
    /// chunk t is rows [t·Per, (t+1)·Per) of b; chunk 0 sums into c, chunk t > 0 into
    /// Partials[t − 1] [N] (overwritten).
    /// </summary>
    internal sealed unsafe class GemvJob : IParallelJob
    {
        public float* A, B, C, Partials;
        public int Ldb, K, N, Per;
        public bool TransB, Accumulate;

        public void Run(int t) =>
            RunGemvChunk(t, TransB, N, K, Per, A, B, Ldb, C, Partials, Accumulate, &GemvDots, &GemvAxpys, &GemvFourRowAxpys);
    }

    /// <summary>
    /// Chunk t of a GEMV split as <see cref="GemvChunks"/> says, for b of either element type (float32, or
    /// 16-bit with the widening kernels): transB, the dots of its columns of c; else the axpys of its rows of
    /// b into c (chunk 0) or its partial row, column block by column block, one row per pass up to
    /// <see cref="GemvRowAxpyMaxN"/> columns and four beyond.
    /// </summary>
    private static unsafe void RunGemvChunk<TB>(int t, bool transB, int N, int K, int per, float* a, TB* b, int ldb,
        float* c, float* partials, bool accumulate,
        delegate*<int, int, int, float*, TB*, int, float*, bool, void> dots,
        delegate*<int, int, int, float*, TB*, int, float*, bool, void> rowAxpys,
        delegate*<int, int, int, float*, TB*, int, float*, bool, void> fourRowAxpys) where TB : unmanaged
    {
        if (transB)
        {
            int j0 = t * per, j1 = Math.Min(N, j0 + per);
            if (j0 < j1) dots(j0, j1, K, a, b, ldb, c, accumulate);
            return;
        }
        int k0 = Math.Min(K, t * per), k1 = Math.Min(K, k0 + per);
        float* y = t == 0 ? c : partials + (long)(t - 1) * N;
        bool acc = t == 0 && accumulate;
        int width = GemvBlockWidth(N);
        for (int jb = 0; jb < N; jb += width)
        {
            int jEnd = Math.Min(N, jb + width);
            var axpys = jEnd - jb <= GemvRowAxpyMaxN ? rowAxpys : fourRowAxpys;
            axpys(jb, jEnd, k1 - k0, a + k0, b + (long)k0 * ldb, ldb, y, acc);
        }
    }

    /// <summary>
    /// b [K, N]: c[j0..j1) (+)= Σ_k a[k] · b[k, j0..j1), one row of b per pass over c, so that b is read
    /// as one forward stream (rows of a block follow each other in memory when it spans all of N),
    /// for blocks up to <see cref="GemvRowAxpyMaxN"/> wide.
    /// </summary>
    private static unsafe void GemvAxpys(int j0, int j1, int K, float* a, float* b, int ldb, float* c, bool accumulate)
    {
        int n = j1 - j0, vc = Vector<float>.Count, n4 = n - n % (4 * vc), n1 = n - n % vc;
        float* y = c + j0;
        if (!accumulate) new Span<float>(y, n).Clear();
        for (int k = 0; k < K; k++)
        {
            float* r = b + (long)k * ldb + j0;
            var ak = new Vector<float>(a[k]);
            int j = 0;
            for (; j < n4; j += 4 * vc)
            {
                Vector.Store(Madd(ak, Vector.Load(r + j), Vector.Load(y + j)), y + j);
                Vector.Store(Madd(ak, Vector.Load(r + j + vc), Vector.Load(y + j + vc)), y + j + vc);
                Vector.Store(Madd(ak, Vector.Load(r + j + 2 * vc), Vector.Load(y + j + 2 * vc)), y + j + 2 * vc);
                Vector.Store(Madd(ak, Vector.Load(r + j + 3 * vc), Vector.Load(y + j + 3 * vc)), y + j + 3 * vc);
            }
            for (; j < n1; j += vc) Vector.Store(Madd(ak, Vector.Load(r + j), Vector.Load(y + j)), y + j);
            for (; j < n; j++) y[j] += a[k] * r[j];
        }
    }

    /// <summary>b [K, N]: c[j0..j1) (+)= Σ_k a[k] · b[k, j0..j1), four rows of b per pass over c.</summary>
    private static unsafe void GemvFourRowAxpys(int j0, int j1, int K, float* a, float* b, int ldb, float* c, bool accumulate)
    {
        int n = j1 - j0, vc = Vector<float>.Count;
        float* y = c + j0;
        if (!accumulate) new Span<float>(y, n).Clear();
        int k = 0;
        for (; k + 4 <= K; k += 4)
        {
            float* r0 = b + (long)k * ldb + j0, r1 = r0 + ldb, r2 = r1 + ldb, r3 = r2 + ldb;
            var a0 = new Vector<float>(a[k]); var a1 = new Vector<float>(a[k + 1]);
            var a2 = new Vector<float>(a[k + 2]); var a3 = new Vector<float>(a[k + 3]);
            int j = 0;
            for (; j + vc <= n; j += vc)
            {
                var acc = Vector.Load(y + j);
                acc = Madd(a0, Vector.Load(r0 + j), acc);
                acc = Madd(a1, Vector.Load(r1 + j), acc);
                acc = Madd(a2, Vector.Load(r2 + j), acc);
                acc = Madd(a3, Vector.Load(r3 + j), acc);
                Vector.Store(acc, y + j);
            }
            for (; j < n; j++) y[j] += a[k] * r0[j] + a[k + 1] * r1[j] + a[k + 2] * r2[j] + a[k + 3] * r3[j];
        }
        for (; k < K; k++)
        {
            float* r = b + (long)k * ldb + j0;
            var ak = new Vector<float>(a[k]);
            int j = 0;
            for (; j + vc <= n; j += vc) Vector.Store(Madd(ak, Vector.Load(r + j), Vector.Load(y + j)), y + j);
            for (; j < n; j++) y[j] += a[k] * r[j];
        }
    }

    /// <summary>b [N, K]: c[j] (+)= dot(a, b[j, :]) for j in [j0, j1); one row at a time up to <see cref="GemvRowDotsMaxK"/>, else four rows sharing each load of a.</summary>
    private static unsafe void GemvDots(int j0, int j1, int K, float* a, float* b, int ldb, float* c, bool accumulate)
    {
        if (K <= GemvRowDotsMaxK) GemvRowDots(j0, j1, K, a, b, ldb, c, accumulate);
        else GemvFourRowDots(j0, j1, K, a, b, ldb, c, accumulate);
    }

    /// <summary>b [N, K]: c[j] (+)= dot(a, b[j, :]) for j in [j0, j1), one row after the other (four accumulators, so the adds of one row overlap).</summary>
    private static unsafe void GemvRowDots(int j0, int j1, int K, float* a, float* b, int ldb, float* c, bool accumulate)
    {
        int vc = Vector<float>.Count, k4 = K - K % (4 * vc), k1 = K - K % vc;
        for (int j = j0; j < j1; j++)
        {
            float* r = b + (long)j * ldb;
            Vector<float> s0 = default, s1 = default, s2 = default, s3 = default;
            int k = 0;
            for (; k < k4; k += 4 * vc)
            {
                s0 = Madd(Vector.Load(a + k), Vector.Load(r + k), s0);
                s1 = Madd(Vector.Load(a + k + vc), Vector.Load(r + k + vc), s1);
                s2 = Madd(Vector.Load(a + k + 2 * vc), Vector.Load(r + k + 2 * vc), s2);
                s3 = Madd(Vector.Load(a + k + 3 * vc), Vector.Load(r + k + 3 * vc), s3);
            }
            for (; k < k1; k += vc) s0 = Madd(Vector.Load(a + k), Vector.Load(r + k), s0);
            float d = Vector.Sum((s0 + s1) + (s2 + s3));
            for (; k < K; k++) d += a[k] * r[k];
            c[j] = accumulate ? c[j] + d : d;
        }
    }

    /// <summary>b [N, K]: c[j] (+)= dot(a, b[j, :]) for j in [j0, j1), four rows of b sharing each load of a.</summary>
    private static unsafe void GemvFourRowDots(int j0, int j1, int K, float* a, float* b, int ldb, float* c, bool accumulate)
    {
        int vc = Vector<float>.Count, kv = K - K % vc;
        int j = j0;
        for (; j + 4 <= j1; j += 4)
        {
            float* r0 = b + (long)j * ldb, r1 = r0 + ldb, r2 = r1 + ldb, r3 = r2 + ldb;
            Vector<float> s0 = default, s1 = default, s2 = default, s3 = default;
            for (int k = 0; k < kv; k += vc)
            {
                var x = Vector.Load(a + k);
                s0 = Madd(x, Vector.Load(r0 + k), s0);
                s1 = Madd(x, Vector.Load(r1 + k), s1);
                s2 = Madd(x, Vector.Load(r2 + k), s2);
                s3 = Madd(x, Vector.Load(r3 + k), s3);
            }
            float d0 = Vector.Sum(s0), d1 = Vector.Sum(s1), d2 = Vector.Sum(s2), d3 = Vector.Sum(s3);
            for (int k = kv; k < K; k++)
            {
                d0 += a[k] * r0[k]; d1 += a[k] * r1[k]; d2 += a[k] * r2[k]; d3 += a[k] * r3[k];
            }
            if (accumulate) { c[j] += d0; c[j + 1] += d1; c[j + 2] += d2; c[j + 3] += d3; }
            else { c[j] = d0; c[j + 1] = d1; c[j + 2] = d2; c[j + 3] = d3; }
        }
        for (; j < j1; j++)
        {
            float* r = b + (long)j * ldb;
            Vector<float> s = default;
            for (int k = 0; k < kv; k += vc) s = Madd(Vector.Load(a + k), Vector.Load(r + k), s);
            float d = Vector.Sum(s);
            for (int k = kv; k < K; k++) d += a[k] * r[k];
            c[j] = accumulate ? c[j] + d : d;
        }
    }

    /// <summary>x · y + z, fused where the CPU has FMA (the check folds away at JIT time).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector<float> Madd(Vector<float> x, Vector<float> y, Vector<float> z) =>
        Fma.IsSupported || AdvSimd.IsSupported ? Vector.FusedMultiplyAdd(x, y, z) : x * y + z;
}
