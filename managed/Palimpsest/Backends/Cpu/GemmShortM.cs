namespace Palimpsest.Backends.Cpu;

public static partial class Gemm
{
    /// <summary>NR panels of B one short-M task packs and multiplies: 64 columns, 256 bytes of a row of b.</summary>
    internal const int GroupPanels = 4;

    /// <summary>Largest packed op(a) (floats, 4 MiB) the short-M path keeps whole: it must stay in L2/L3.</summary>
    internal const long ShortMMaxAFloats = 1L << 20;

    /// <summary>Whether <see cref="SgemmShortM"/> runs c [M, N] (+)= op(a) [M, K] · op(b): few rows (a prefill, not a training batch) and enough columns to share.</summary>
    internal static bool UseShortM(int M, int N, int K) =>
        M <= 2 * MCMax && (long)((M + MR - 1) / MR) * MR * K <= ShortMMaxAFloats && N >= GroupPanels * NR;

    /// <summary>
    /// c [M, N] (+)= op(a) [M, K] · op(b) [K, N] for short M (a prefill: M ≈ 128 rows against weights
    /// of thousands of columns). op(a) is packed once, whole (phase 1); then each task takes 64
    /// columns, packs its own KC x 64 block of op(b) just before it multiplies it by every row of a,
    /// for every k block, and writes its columns of c (phase 2). Against <see cref="SgemmBlocked"/>
    /// there is no shared packed B to write out to L3 and read back and no barrier per k block, and
    /// one thread packing (memory bound) overlaps the other multiplying (compute bound): packing
    /// the weights as a phase of its own took a third of a GPT-2-small prefill.
    /// </summary>
    private static unsafe void SgemmShortM(bool transA, bool transB, int M, int N, int K,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc, bool accumulate,
        GemmKernel kernel, int threads, SimdWorkers? workers, IGemmEpilogue? epilogue)
    {
        int slivers = (M + MR - 1) / MR, kBlocks = (K + KC - 1) / KC;
        int groups = (N + GroupPanels * NR - 1) / (GroupPanels * NR);
        var scratch = GemmScratch.Acquire();
        try
        {
            float* aPack = scratch.PackB((long)slivers * MR * K);
            fixed (float* pa = a, pb = b, pc = c)
            {
                var job = scratch.ShortMJob;
                job.A = pa; job.B = pb; job.C = pc; job.APack = aPack; job.Lda = lda; job.Ldb = ldb; job.Ldc = ldc;
                job.TransA = transA; job.TransB = transB; job.M = M; job.N = N; job.K = K; job.Slivers = slivers;
                job.Accumulate = accumulate; job.Kernel = kernel; job.Epilogue = epilogue;
                // Phase 1: op(a), k block by k block, each split in two halves of its slivers.
                job.Packing = true;
                ParallelFor(workers, threads, kBlocks * 2, job);
                // Phase 2: the column groups, handed out one at a time (the threads stay balanced).
                job.Packing = false;
                ParallelFor(workers, threads, groups, job);
                job.Epilogue = null;
            }
        }
        finally { GemmScratch.Release(scratch); }
    }

    /// <summary>One <see cref="SgemmShortM"/> call; reused from call to call (see <see cref="GemmScratch"/>).</summary>
    internal sealed unsafe class ShortMJob : IParallelJob
    {
        public float* A, B, C, APack;
        public int Lda, Ldb, Ldc, M, N, K, Slivers;
        public bool TransA, TransB, Accumulate, Packing;
        public GemmKernel Kernel;
        public IGemmEpilogue? Epilogue;

        // Packed op(a): k block q (k from q·KC) holds every sliver as [Slivers][kc][MR], at q·Slivers·MR·KC.
        private float* ABlock(int q) => APack + (long)q * Slivers * MR * KC;

        public void Run(int index)
        {
            if (Packing) PackA(index / 2, index % 2);
            else Group(index);
        }

        /// <summary>The rows of b that the k block from <paramref name="p0"/> of columns [j0, j0 + nc) reads, spread over <paramref name="steps"/> steps.</summary>
        private RowPrefetch NextRows(int p0, int j0, int nc, int steps)
        {
            if (p0 >= K) return default;
            int kc = Math.Min(KC, K - p0);
            return TransB
                ? new RowPrefetch(B + (long)j0 * Ldb + p0, Ldb, nc, kc, steps)   // nc rows of b, kc values each
                : new RowPrefetch(B + (long)p0 * Ldb + j0, Ldb, kc, nc, steps);  // kc rows of b, nc values each
        }

        /// <summary>Half h of the slivers of op(a)'s k block q.</summary>
        private void PackA(int q, int h)
        {
            int p0 = q * KC, kc = Math.Min(KC, K - p0);
            int s0 = h * ((Slivers + 1) / 2), s1 = Math.Min(Slivers, s0 + (Slivers + 1) / 2);
            if (s0 >= s1) return;
            int i0 = s0 * MR, mc = Math.Min(M, s1 * MR) - i0;
            GemmPack.PackA(TransA, A, Lda, i0, p0, mc, kc, ABlock(q) + (long)s0 * MR * kc);
        }

        /// <summary>Columns [g·64, g·64 + 64) of c, over all of k.</summary>
        private void Group(int g)
        {
            int j0 = g * GroupPanels * NR, nc = Math.Min(GroupPanels * NR, N - j0);
            int panels = (nc + NR - 1) / NR;
            var own = GemmScratch.ForThisThread;
            float* bPack = own.GroupB((long)KC * GroupPanels * NR);
            float* tile = own.Tile();
            for (int p0 = 0, q = 0; p0 < K; p0 += KC, q++)
            {
                int kc = Math.Min(KC, K - p0);
                bool acc = Accumulate || p0 > 0;
                if (TransB)
                    for (int jp = 0; jp < panels; jp++)
                        GemmPack.PackB(true, B, Ldb, p0, j0 + jp * NR, kc, Math.Min(NR, nc - jp * NR), bPack + (long)jp * kc * NR);
                else GemmPack.PackBRows(B, Ldb, p0, j0, 0, kc, nc, bPack, (long)kc * NR);
                float* aBlock = ABlock(q);
                // The weights come from DRAM: while this block multiplies, the next one's rows
                // of b are prefetched into L2 a few at a time, so packing it will not wait on them.
                var next = NextRows(p0 + KC, j0, nc, panels * Slivers);
                for (int jp = 0; jp < panels; jp++)
                {
                    int nr = Math.Min(NR, nc - jp * NR);
                    float* bp = bPack + (long)jp * kc * NR;
                    for (int s = 0; s < Slivers; s++)
                    {
                        int mr = Math.Min(MR, M - s * MR);
                        MicroTile(Kernel, kc, aBlock + (long)s * MR * kc, bp, C + (long)s * MR * Ldc + j0 + jp * NR, Ldc, mr, nr, acc, tile);
                        next.Step();
                    }
                }
            }
            Epilogue?.Apply(C, Ldc, 0, M, j0, nc);
        }
    }

    /// <summary>Prefetches rows [start + r·stride, + len floats) for r in [0, rows) into L2, a share of the rows per <see cref="Step"/>: rows of b for the short-M GEMM, the kc 32-float rows of a packed panel for the prepacked one.</summary>
    private unsafe struct RowPrefetch(float* start, int stride, int rows, int len, int steps)
    {
        private int _row;
        private readonly int _perStep = steps > 0 ? (rows + steps - 1) / steps : rows;

        public void Step()
        {
            if (start == null || !System.Runtime.Intrinsics.X86.Sse.IsSupported) return;
            int end = Math.Min(rows, _row + _perStep);
            for (; _row < end; _row++)
            {
                byte* p = (byte*)(start + (long)_row * stride), last = (byte*)(start + (long)_row * stride + len - 1);
                for (; p <= last; p += 64) System.Runtime.Intrinsics.X86.Sse.Prefetch1(p);
                System.Runtime.Intrinsics.X86.Sse.Prefetch1(last);
            }
        }
    }

    /// <summary>
    /// c [mr, nr] (+)= packed a sliver [kc][MR] · packed b panel [kc][NR] for mr ≤ MR, nr ≤ NR: the
    /// micro-kernel straight into c for a full tile; an edge tile is computed whole into
    /// <paramref name="tile"/> [MR, NR] and its valid part copied.
    /// </summary>
    internal static unsafe void MicroTile(GemmKernel kernel, int kc, float* ap, float* bp, float* cp, int ldc, int mr, int nr, bool accumulate, float* tile)
    {
        if (mr == MR && nr == NR)
        {
            GemmKernels.Run(kernel, kc, ap, bp, cp, ldc, accumulate);
            return;
        }
        GemmKernels.Run(kernel, kc, ap, bp, tile, NR, false);
        for (int i = 0; i < mr; i++)
        {
            float* crow = cp + (long)i * ldc;
            float* trow = tile + i * NR;
            if (accumulate) for (int j = 0; j < nr; j++) crow[j] += trow[j];
            else for (int j = 0; j < nr; j++) crow[j] = trow[j];
        }
    }
}
