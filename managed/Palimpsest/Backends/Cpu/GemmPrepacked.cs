using System.Runtime.Intrinsics.X86;

namespace Palimpsest.Backends.Cpu;

public static partial class Gemm
{
    /// <summary>Rows of the AVX-512 tile: 128 prompt rows are 16 whole slivers (six-row slivers leave the 22nd with 2 rows of work).</summary>
    internal const int MR8 = 8;

    /// <summary>k block of the prepacked GEMM: 128 and 192 measured the same as 256 on GPT-2's shapes.</summary>
    private const int KCP = KC;

    /// <summary>Rows of c one pass of <see cref="SgemmPrepacked"/> takes: their packed k block of a (256 x 256 floats) stays in L2.</summary>
    internal const int PrepackedRows = 256;

    /// <summary>Panels of the packed weight one task multiplies: 64 columns of c (each task then reads its rows of a once per 64 columns).</summary>
    private const int PrepackedGroupPanels = 2;

    /// <summary>
    /// Tasks each thread should get at least: the threads finish a product together only to within
    /// a task, and a 768-column product has twelve 64-column tasks; below this count tasks are one panel.
    /// </summary>
    private const int PrepackedTasksPerThread = 8;

    /// <summary>
    /// Whether c [M, N] = a [M, K] · op(b) runs on a packed copy of the weight b: an AVX-512 CPU
    /// (the 8 x 32 tile needs its 32 registers), more than one row (one row is a GEMV, which reads
    /// the weight once anyway), a prefill's rows rather than a training batch's (which reuse each
    /// panel of b across many rows from L3), and enough columns to share between threads.
    /// </summary>
    internal static bool UsePrepacked(int M, int N) =>
        Avx512F.IsSupported && M >= 2 && M <= 4 * PrepackedRows && N >= PrepackedGroupPanels * PackedWeight.NR;

    /// <summary>Fills <paramref name="w"/> from b (layout as <see cref="PackedWeight.TransB"/> says), panels spread over the workers.</summary>
    internal static unsafe void PackWeight(PackedWeight w, float* b, int ldb, SimdWorkers workers)
    {
        var job = new PackJob { W = w, B = b, Ldb = ldb };
        int slices = Math.Min(w.Panels, 4 * workers.Threads);
        job.PerSlice = (w.Panels + slices - 1) / slices;
        ParallelFor(workers, workers.Threads, slices, job);
    }

    private sealed unsafe class PackJob : IParallelJob
    {
        public PackedWeight W = null!;
        public float* B;
        public int Ldb, PerSlice;

        public void Run(int index) => W.PackPanels(B, Ldb, index * PerSlice, Math.Min(W.Panels, (index + 1) * PerSlice));
    }

    /// <summary>
    /// c [M, N] (+)= op(a) [M, K] · op(b) [K, N] with op(b) already packed (<paramref name="b"/>), for
    /// 2 ≤ M (a prefill). Rows go in passes of up to 256; in each, op(a) is packed whole into
    /// [k block][8-row sliver][kc][8] (phase 1), then each task takes 64 columns (32 when there are
    /// few) and, for every k block, runs the 8 x 32 micro-kernel over every sliver against each packed
    /// panel, which it reads straight from the weight's copy: nothing of b is packed or written
    /// (phase 2). A linear layer's epilogue runs on each tile of the last k block as it is finished,
    /// any other per column group, on the thread that made it. Same sums in the same order as
    /// <see cref="SgemmShortM"/>: per element, one FMA chain per k block, the blocks added in turn.
    /// </summary>
    internal static unsafe void SgemmPrepacked(bool transA, int M, int N, int K, ReadOnlySpan<float> a, int lda,
        PackedWeight b, Span<float> c, int ldc, bool accumulate, int threads, SimdWorkers? workers, IGemmEpilogue? epilogue)
    {
        if (M < 0 || N < 0 || K < 0) throw new ArgumentException($"negative GEMM size M={M} N={N} K={K}");
        CheckMatrix("a", transA ? K : M, transA ? M : K, a.Length, lda);
        CheckMatrix("c", M, N, c.Length, ldc);
        if (b.K != K || b.N != N) throw new ArgumentException($"packed weight [{b.K}, {b.N}] does not match K={K} N={N}");
        if (M == 0 || N == 0) return;
        if (K == 0)
        {
            if (!accumulate) for (int i = 0; i < M; i++) c.Slice(i * ldc, N).Clear();
            fixed (float* pc0 = c) epilogue?.Apply(pc0, ldc, 0, M, 0, N);
            return;
        }
        var scratch = GemmScratch.Acquire();
        try
        {
            fixed (float* pa = a, pc = c)
            {
                var job = scratch.PrepackedJob;
                job.Outputs[0] = new PrepackedOutput { W = b, C = pc, Ldc = ldc, Epilogue = epilogue };
                job.OutputCount = 1;
                RunPrepacked(job, scratch, transA, M, K, pa, lda, accumulate, threads, workers);
            }
        }
        finally { GemmScratch.Release(scratch); }
    }

    /// <summary>
    /// c_i [M, N_i] = a [M, K] · b_i for the packed weights of one layer that share their input
    /// (q, k and v): a is packed once and the column groups of every output are handed out as one
    /// set, so the threads part once instead of three times. Each c_i is as <see cref="SgemmPrepacked"/> gives it.
    /// </summary>
    internal static unsafe void SgemmPrepackedShared(int M, int K, ReadOnlySpan<float> a, int lda, ReadOnlySpan<PackedWeight> bs,
        ReadOnlySpan<nint> cs, ReadOnlySpan<IGemmEpilogue?> epilogues, int threads, SimdWorkers? workers)
    {
        if (bs.Length is < 1 or > PrepackedJob.MaxOutputs || cs.Length != bs.Length || epilogues.Length != bs.Length)
            throw new ArgumentException($"1 to {PrepackedJob.MaxOutputs} outputs, each with its c and epilogue");
        CheckMatrix("a", M, K, a.Length, lda);
        foreach (var b in bs) if (b.K != K) throw new ArgumentException($"packed weight [{b.K}, {b.N}] does not match K={K}");
        if (M == 0 || K == 0) throw new ArgumentException($"shared prepacked GEMM needs M, K > 0 (M={M} K={K})");
        var scratch = GemmScratch.Acquire();
        try
        {
            fixed (float* pa = a)
            {
                var job = scratch.PrepackedJob;
                for (int o = 0; o < bs.Length; o++)
                    job.Outputs[o] = new PrepackedOutput { W = bs[o], C = (float*)cs[o], Ldc = bs[o].N, Epilogue = epilogues[o] };
                job.OutputCount = bs.Length;
                RunPrepacked(job, scratch, false, M, K, pa, lda, false, threads, workers);
            }
        }
        finally { GemmScratch.Release(scratch); }
    }

    /// <summary>The passes of 256 rows over the job's outputs: pack a's rows, then every output's column groups.</summary>
    private static unsafe void RunPrepacked(PrepackedJob job, GemmScratch scratch, bool transA, int M, int K, float* pa, int lda,
        bool accumulate, int threads, SimdWorkers? workers)
    {
        if (workers is not null) threads = Math.Min(threads, workers.Threads);
        int rowsMax = Math.Min(M, PrepackedRows);
        job.APack = scratch.PackB((long)(rowsMax + MR8 - 1) / MR8 * MR8 * ((K + KCP - 1) / KCP) * KCP);
        job.Lda = lda; job.TransA = transA; job.K = K; job.Accumulate = accumulate;
        int kBlocks = (K + KCP - 1) / KCP, panels = 0;
        for (int o = 0; o < job.OutputCount; o++) panels += job.Outputs[o].W.Panels;
        job.GroupPanels = panels < PrepackedGroupPanels * PrepackedTasksPerThread * threads ? 1 : PrepackedGroupPanels;
        int groups = 0;
        for (int o = 0; o < job.OutputCount; o++)
        {
            job.Outputs[o].FirstGroup = groups;
            groups += (job.Outputs[o].W.Panels + job.GroupPanels - 1) / job.GroupPanels;
        }
        try
        {
            for (int i0 = 0; i0 < M; i0 += PrepackedRows)
            {
                job.M = Math.Min(PrepackedRows, M - i0);
                job.Slivers = (job.M + MR8 - 1) / MR8;
                job.A = transA ? pa + i0 : pa + (long)i0 * lda;
                job.I0 = i0;
                job.Packing = true;
                ParallelFor(workers, threads, kBlocks * 2, job);
                job.Packing = false;
                ParallelFor(workers, threads, groups, job);
            }
        }
        finally
        {
            for (int o = 0; o < job.OutputCount; o++) job.Outputs[o] = default; // drop the references
            job.OutputCount = 0;
        }
    }

    /// <summary>One output of a prepacked GEMM: its packed weight, c (row 0) and row stride, epilogue, and first task.</summary>
    internal unsafe struct PrepackedOutput
    {
        public PackedWeight W;
        public float* C;
        public int Ldc, FirstGroup;
        public IGemmEpilogue? Epilogue;
    }

    /// <summary>One <see cref="SgemmPrepacked"/> pass; reused from call to call (see <see cref="GemmScratch"/>).</summary>
    internal sealed unsafe class PrepackedJob : IParallelJob
    {
        public const int MaxOutputs = 3;
        public readonly PrepackedOutput[] Outputs = new PrepackedOutput[MaxOutputs];
        public int OutputCount;
        public float* A, APack;
        public int Lda, M, K, Slivers, GroupPanels;
        /// <summary>This pass's first row of c (C is row 0 of the whole c).</summary>
        public int I0;
        public bool TransA, Accumulate, Packing;

        // k block q (k from q·KCP) of the packed rows: [Slivers][kc][8], at q·Slivers·8·KCP.
        private float* ABlock(int q) => APack + (long)q * Slivers * MR8 * KCP;

        public void Run(int index)
        {
            if (Packing) PackA8(index / 2, index % 2);
            else Group(index);
        }

        /// <summary>Half h of the slivers of op(a)'s k block q, rows past M zero.</summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        private void PackA8(int q, int h)
        {
            int p0 = q * KCP, kc = Math.Min(KCP, K - p0);
            int half = (Slivers + 1) / 2, s0 = h * half, s1 = Math.Min(Slivers, s0 + half);
            float* dst = ABlock(q);
            for (int s = s0; s < s1; s++)
            {
                float* d = dst + (long)s * MR8 * kc;
                int i0 = s * MR8, mr = Math.Min(MR8, M - i0), p = 0;
                if (!TransA && mr == MR8 && Avx.IsSupported)
                {
                    // eight rows by eight k at a time, through a register transpose
                    float* src = A + (long)i0 * Lda + p0;
                    for (; p + 8 <= kc; p += 8) GemmPack.Transpose8x8(src + p, Lda, d + p * MR8, MR8);
                }
                for (int i = 0; i < MR8; i++)
                {
                    if (i >= mr)
                    {
                        for (int pp = p; pp < kc; pp++) d[pp * MR8 + i] = 0;
                        continue;
                    }
                    if (TransA) for (int pp = p; pp < kc; pp++) d[pp * MR8 + i] = A[(long)(p0 + pp) * Lda + i0 + i];
                    else
                    {
                        float* src = A + (long)(i0 + i) * Lda + p0;
                        for (int pp = p; pp < kc; pp++) d[pp * MR8 + i] = src[pp];
                    }
                }
            }
        }

        /// <summary>Columns [g·w, g·w + w) of these rows of c (w = 32 · GroupPanels), over all of k.</summary>
        private void Group(int g)
        {
            int o = OutputCount - 1;
            while (Outputs[o].FirstGroup > g) o--;
            ref var output = ref Outputs[o];
            Group(g - output.FirstGroup, output.W, output.C, output.Ldc, output.Epilogue);
        }

        // Optimized from the first call, as the kernel is: a prefill calls this a few thousand times,
        // and under tiered compilation the first ten prefills of a process ran 25–40 % slower
        // (BenchmarkDotNet's 3 warmups then timed 236 falling to 169 ms).
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
        private void Group(int g, PackedWeight w, float* c, int ldc, IGemmEpilogue? epilogue)
        {
            const int NR32 = PackedWeight.NR;
            int N = w.N;
            int j0 = g * GroupPanels * NR32, nc = Math.Min(GroupPanels * NR32, N - j0);
            int panels = (nc + NR32 - 1) / NR32;
            float* tile = GemmScratch.ForThisThread.Tile8x32();
            // A linear layer's bias, residual and gelu run on each tile of the last k block as soon
            // as it is final, while it is in L1, instead of over the group's rows afterwards.
            var fused = epilogue as LinearEpilogue is { FusesTiles: true } le ? le : null;
            for (int p0 = 0, q = 0; p0 < K; p0 += KCP, q++)
            {
                int kc = Math.Min(KCP, K - p0);
                bool acc = Accumulate || p0 > 0, last = p0 + KCP >= K;
                float* aBlock = ABlock(q);
                for (int jp = 0; jp < panels; jp++)
                {
                    int nr = Math.Min(NR32, nc - jp * NR32), j = j0 + jp * NR32;
                    float* bp = w.Panel(j / NR32, p0);
                    // The panel this task multiplies next comes from DRAM: it is prefetched into L2
                    // a share at a time while this one is multiplied by every sliver.
                    var next = jp + 1 < panels ? new RowPrefetch(w.Panel(j / NR32 + 1, p0), NR32, kc, NR32, Slivers)
                        : p0 + KCP < K ? new RowPrefetch(w.Panel(j0 / NR32, p0 + KCP), NR32, Math.Min(KCP, K - p0 - KCP), NR32, Slivers) : default;
                    for (int s = 0; s < Slivers; s++)
                    {
                        next.Step();
                        int mr = Math.Min(MR8, M - s * MR8), row = I0 + s * MR8;
                        float* cp = c + (long)row * ldc + j;
                        float* ap = aBlock + (long)s * MR8 * kc;
                        if (mr == MR8 && nr == NR32) GemmKernels.Avx512x8x32(kc, ap, bp, cp, ldc, acc);
                        else
                        {
                            GemmKernels.Avx512x8x32(kc, ap, bp, tile, NR32, false);
                            for (int i = 0; i < mr; i++)
                            {
                                float* crow = cp + (long)i * ldc, trow = tile + i * NR32;
                                if (acc) for (int jj = 0; jj < nr; jj++) crow[jj] += trow[jj];
                                else for (int jj = 0; jj < nr; jj++) crow[jj] = trow[jj];
                            }
                        }
                        if (last && fused is not null) fused.ApplyTile(c, ldc, row, mr, j, nr);
                    }
                }
            }
            if (fused is null) epilogue?.Apply(c, ldc, I0, M, j0, nc);
        }
    }
}
