using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

public static partial class Gemm
{
    // Block sizes (floats). A micro-tile of C is MR x NR and lives in registers; a packed
    // KC x NR micro-panel of B (16 KiB) stays in L1 while the MR-row slivers of the packed
    // MC x KC block of A (144 KiB) stream from L2; the KC x NC panel of B sits in L3.
    internal const int MR = 6, NR = 16, KC = 256, MCMax = 144, NC = 4096;

    /// <summary>
    /// Floats from one packed B micro-panel to the next: its kc x NR values plus one cache line.
    /// Without the pad panels sit a multiple of 4 KiB apart, so packing a row of b (one line into
    /// every panel) lands all its writes in the same few cache sets, which thrash.
    /// </summary>
    internal static long PanelStride(int kc) => (long)kc * NR + 16;

    /// <summary>
    /// c [M, N] (+)= op(a) · op(b) for M ≥ 2 (GEMV handles M = 1): loops jc (NC) → pc (KC) →
    /// blocks of rows (parallel) → NR panels → MR slivers → micro-kernel. With <paramref name="b16"/>
    /// given, b is that 16-bit matrix (<paramref name="kind16"/>) instead, widened while it is packed.
    /// </summary>
    private static unsafe void SgemmBlocked(bool transA, bool transB, int M, int N, int K,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, bool accumulate,
        GemmKernel kernel, int threads, SimdWorkers? workers, ushort* b16 = null, DType kind16 = DType.F32)
    {
        // Rows are split into blocks of whole MR slivers; the count is a multiple of the thread
        // count so that every thread gets the same amount of work.
        int slivers = (M + MR - 1) / MR;
        int mBlocks = Math.Max(1, (M + MCMax - 1) / MCMax);
        if (threads > 1) mBlocks = Math.Min(slivers, (mBlocks + threads - 1) / threads * threads);
        var scratch = GemmScratch.Acquire();
        try
        {
            long panelStride = PanelStride(Math.Min(KC, K));
            float* bPack = scratch.PackB(panelStride * ((Math.Min(NC, N) + NR - 1) / NR));
            fixed (float* pa = a, pb = b, pc = c)
            {
                var job = scratch.BlockJob;
                job.A = pa; job.B = pb; job.C = pc; job.Lda = lda; job.Ldb = ldb; job.Ldc = ldc;
                job.TransA = transA; job.TransB = transB; job.M = M; job.Slivers = slivers; job.MBlocks = mBlocks;
                job.BPack = bPack; job.PanelStride = panelStride; job.Kernel = kernel; job.B16 = b16; job.Kind16 = kind16;
                for (int jc = 0; jc < N; jc += NC)
                {
                    job.Jc = jc;
                    job.Nc = Math.Min(NC, N - jc);
                    int panels = (job.Nc + NR - 1) / NR;
                    for (int p0 = 0; p0 < K; p0 += KC)
                    {
                        job.Pc = p0;
                        job.Kc = Math.Min(KC, K - p0);
                        job.Accumulate = accumulate || p0 > 0;
                        // With fewer row blocks than threads (short M) the NR panels are split too.
                        job.NSplit = mBlocks >= threads ? 1 : Math.Min(panels, (threads + mBlocks - 1) / mBlocks);
                        // Phase 1: pack the KC x NC panel of B (shared by every task), in slices:
                        // of rows when b is [K, N] (each slice then reads one contiguous stretch of
                        // b), of panels when b is [N, K] (a panel is then NR contiguous rows of b)
                        // or 16-bit (PackBHalf widens panel by panel).
                        job.Packing = true;
                        int sliceCount = transB || b16 != null ? Math.Min(threads, panels) : Math.Min(threads, (job.Kc + 15) / 16);
                        job.PanelsPerSlice = (panels + sliceCount - 1) / sliceCount;
                        job.RowsPerSlice = (job.Kc + sliceCount - 1) / sliceCount;
                        ParallelFor(workers, threads, sliceCount, job);
                        // Phase 2: the (row block, panel group) tasks.
                        job.Packing = false;
                        ParallelFor(workers, threads, mBlocks * job.NSplit, job);
                    }
                }
            }
        }
        finally { GemmScratch.Release(scratch); }
    }

    /// <summary>Everything one (jc, pc) step needs; reused from call to call (see <see cref="GemmScratch"/>).</summary>
    internal sealed unsafe class BlockJob : IParallelJob
    {
        public float* A, B, C, BPack;
        /// <summary>A 16-bit b (null: b is float32 in <see cref="B"/>) and its format.</summary>
        public ushort* B16;
        public DType Kind16;
        public int Lda, Ldb, Ldc, M, Slivers, MBlocks, NSplit, Jc, Nc, Pc, Kc, PanelsPerSlice, RowsPerSlice;
        public long PanelStride;
        public bool TransA, TransB, Accumulate, Packing;
        public GemmKernel Kernel;

        public void Run(int index)
        {
            if (!Packing) RunTask(index);
            else if (TransB || B16 != null)
            {
                int panels = (Nc + NR - 1) / NR;
                PackBPanels(index * PanelsPerSlice, Math.Min(panels, (index + 1) * PanelsPerSlice));
            }
            else GemmPack.PackBRows(B, Ldb, Pc, Jc, index * RowsPerSlice, Math.Min(Kc, (index + 1) * RowsPerSlice), Nc, BPack, PanelStride);
        }

        /// <summary>Packs NR-column panels [p0, p1) of op(b)[Pc.., Jc..] into BPack, zero-padding the last.</summary>
        private void PackBPanels(int p0, int p1)
        {
            for (int jp = p0; jp < p1; jp++)
            {
                int j0 = jp * NR, nr = Math.Min(NR, Nc - j0);
                float* dst = BPack + jp * PanelStride;
                if (B16 == null) GemmPack.PackB(TransB, B, Ldb, Pc, Jc + j0, Kc, nr, dst);
                else if (Kind16 == DType.BF16) GemmPack.PackBHalf<HalfWiden.Bf16>(TransB, B16, Ldb, Pc, Jc + j0, Kc, nr, dst);
                else GemmPack.PackBHalf<HalfWiden.F16>(TransB, B16, Ldb, Pc, Jc + j0, Kc, nr, dst);
            }
        }

        /// <summary>Task t = (row block, panel group): packs its rows of A and runs the micro-kernels.</summary>
        private void RunTask(int t)
        {
            int ib = t / NSplit, js = t % NSplit;
            int s0 = (int)((long)ib * Slivers / MBlocks), s1 = (int)((long)(ib + 1) * Slivers / MBlocks);
            int i0 = s0 * MR, i1 = Math.Min(M, s1 * MR), mc = i1 - i0;
            if (mc <= 0) return;
            int panels = (Nc + NR - 1) / NR;
            int jp0 = (int)((long)js * panels / NSplit), jp1 = (int)((long)(js + 1) * panels / NSplit);
            if (jp0 >= jp1) return;

            float* aPack = GemmScratch.ForThisThread.PackA((long)(s1 - s0) * MR * Kc);
            GemmPack.PackA(TransA, A, Lda, i0, Pc, mc, Kc, aPack);

            float* tile = stackalloc float[MR * NR];
            for (int jp = jp0; jp < jp1; jp++)
            {
                int j0 = jp * NR, nr = Math.Min(NR, Nc - j0);
                float* bp = BPack + jp * PanelStride;
                for (int ir = 0; ir < mc; ir += MR)
                    MicroTile(Kernel, Kc, aPack + (long)ir * Kc, bp, C + (long)(i0 + ir) * Ldc + Jc + j0, Ldc, Math.Min(MR, mc - ir), nr, Accumulate, tile);
            }
        }
    }
}
