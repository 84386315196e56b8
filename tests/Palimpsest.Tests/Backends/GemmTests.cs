using System.Runtime.Intrinsics.X86;
using Palimpsest.Backends.Cpu;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// The blocked <see cref="Gemm.Sgemm(bool,bool,int,int,int,ReadOnlySpan{float},int,ReadOnlySpan{float},int,Span{float},int,bool)"/>
/// against <see cref="Gemm.SgemmNaive"/> on shapes that are not multiples of the tile (MR 6, NR 16),
/// the k block (256), the row block (144) or the column block (4096), for every transpose
/// combination, with and without accumulate, padded leading dimensions, one thread and all.
///
/// Error measure: a float32 dot product of length K is backward stable with a componentwise bound
/// of about K·2⁻²⁴ times Σ_p |a_ip|·|b_pj|, so each error is divided by that sum (not by |c|, which
/// can be near zero by cancellation) and must stay below 1e-5 (K·2⁻²⁴ is 1.8e-5 at K = 300).
/// </summary>
public class GemmTests(ITestOutputHelper output)
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 }, { 7, 13, 5 }, { 65, 33, 129 }, { 1, 300, 257 }, { 130, 1, 70 },
        { 6, 16, 256 }, { 13, 17, 1 }, { 2, 3, 300 }, { 300, 170, 520 }, { 7, 4100, 33 },
        // GEMVs large enough to run on several threads: split over k when b is [K, N] (the
        // partial rows of c are summed after), over columns when it is [N, K]. Each GEMV chooses
        // one row of b at a time or four by its width: 1030 columns and k = 771 take one row,
        // 9000 columns four rows per pass over c, k = 2100 four rows per dot; 70001 columns cross
        // the column block.
        { 1, 1030, 771 }, { 1, 9000, 130 }, { 1, 37, 2100 }, { 1, 70001, 3 },
        // The short-M path (a prefill: few rows, column groups of 64): several k blocks, a last
        // group of 8 columns, and a last sliver of 2 rows.
        { 128, 200, 700 }, { 13, 1030, 300 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Sgemm_matches_naive_for_every_transpose_and_accumulate(int m, int n, int k)
    {
        foreach (var ta in new[] { false, true })
            foreach (var tb in new[] { false, true })
                foreach (var acc in new[] { false, true })
                    Check(m, n, k, ta, tb, acc, kernel: null, threads: Environment.ProcessorCount, pad: 0);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Portable_kernel_single_thread_padded_ld_matches_naive(int m, int n, int k)
    {
        foreach (var ta in new[] { false, true })
            foreach (var tb in new[] { false, true })
                Check(m, n, k, ta, tb, accumulate: true, GemmKernel.Portable, threads: 1, pad: 3);
    }

    [Fact]
    public void Fma_kernel_with_padded_ld_and_two_threads_matches_naive()
    {
        if (!Fma.IsSupported) Assert.Skip("this CPU has no FMA3: the Fma256 kernel cannot run");
        foreach (var ta in new[] { false, true })
            foreach (var tb in new[] { false, true })
                Check(150, 37, 300, ta, tb, accumulate: true, GemmKernel.Fma256, threads: 2, pad: 5);
    }

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Sgemm_on_backend_workers_matches_naive(int m, int n, int k)
    {
        using var workers = new SimdWorkers(3); // more threads than cores: exercises the hand-off
        foreach (var ta in new[] { false, true })
            foreach (var tb in new[] { false, true })
                Check(m, n, k, ta, tb, accumulate: ta, Gemm.DefaultKernel, threads: 3, pad: 1, workers);
    }

    [Fact]
    public void K_zero_overwrites_with_zero_or_leaves_c_when_accumulating()
    {
        var c = new float[] { 1, 2, 3, 4, 5, 6 };
        Gemm.Sgemm(false, false, 2, 3, 0, ReadOnlySpan<float>.Empty, 0, ReadOnlySpan<float>.Empty, 3, c, 3, accumulate: true);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5, 6 }, c);
        Gemm.Sgemm(false, false, 2, 3, 0, ReadOnlySpan<float>.Empty, 0, ReadOnlySpan<float>.Empty, 3, c, 3, accumulate: false);
        Assert.Equal(new float[6], c);
    }

    [Fact]
    public void Too_short_operands_are_rejected()
    {
        var a = new float[6]; var b = new float[6]; var c = new float[4];
        var e = Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, 2, 2, 4, a, 4, b, 2, c, 2, false));
        Assert.Contains("GEMM a", e.Message);
        Assert.Throws<ArgumentException>(() => Gemm.Sgemm(false, false, 2, 2, 3, a, 2, b, 2, c, 2, false)); // lda < K
    }

    private void Check(int m, int n, int k, bool ta, bool tb, bool accumulate, GemmKernel? kernel, int threads, int pad,
        SimdWorkers? workers = null)
    {
        var rng = new Random(HashCode.Combine(m, n, k, ta, tb, accumulate, pad));
        int aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n;
        int lda = aCols + pad, ldb = bCols + pad, ldc = n + pad;
        float[] a = Random(rng, aRows * lda), b = Random(rng, bRows * ldb), c0 = Random(rng, m * ldc);
        var fast = (float[])c0.Clone(); var slow = (float[])c0.Clone();
        if (kernel is null) Gemm.Sgemm(ta, tb, m, n, k, a, lda, b, ldb, fast, ldc, accumulate);
        else Gemm.Sgemm(ta, tb, m, n, k, a, lda, b, ldb, fast, ldc, accumulate, kernel.Value, threads, workers);
        Gemm.SgemmNaive(ta, tb, m, n, k, a, lda, b, ldb, slow, ldc, accumulate);

        var (worst, maxAbs, wi, wj) = Errors(m, n, k, ta, tb, accumulate, a, lda, b, ldb, c0, fast, slow, ldc);
        Assert.True(worst <= 1e-5,
            $"Sgemm {m}x{n}x{k} transA={ta} transB={tb} acc={accumulate} kernel={kernel?.ToString() ?? "default"} threads={threads} pad={pad}: " +
            $"max rel error {worst:E2} at ({wi}, {wj}), max abs error {maxAbs:E2}");
        output.WriteLine($"{m}x{n}x{k} tA={ta} tB={tb} acc={accumulate} kernel={kernel?.ToString() ?? "default"} threads={threads}: max rel {worst:E2}, max abs {maxAbs:E2}");
        // Padding between rows of c belongs to the caller: it must come back untouched.
        for (int i = 0; i < m; i++)
            for (int j = n; j < ldc; j++)
                Assert.True(fast[i * ldc + j] == c0[i * ldc + j], $"Sgemm wrote the padding of c at ({i}, {j})");
    }

    /// <summary>The largest error of fast against slow relative to Σ_p |a_ip|·|b_pj| (+ |c0_ij| when accumulating), where, and the largest absolute error.</summary>
    internal static (double Worst, double MaxAbs, int I, int J) Errors(int m, int n, int k, bool ta, bool tb, bool accumulate,
        float[] a, int lda, float[] b, int ldb, float[] c0, float[] fast, float[] slow, int ldc)
    {
        double worst = 0, maxAbs = 0; int wi = -1, wj = -1;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double scale = accumulate ? Math.Abs(c0[i * ldc + j]) : 0;
                for (int p = 0; p < k; p++)
                    scale += Math.Abs(ta ? a[p * lda + i] : a[i * lda + p]) * Math.Abs(tb ? b[j * ldb + p] : b[p * ldb + j]);
                double err = Math.Abs(fast[i * ldc + j] - slow[i * ldc + j]);
                maxAbs = Math.Max(maxAbs, err);
                double rel = err / Math.Max(scale, 1e-30);
                if (rel > worst) { worst = rel; wi = i; wj = j; }
            }
        return (worst, maxAbs, wi, wj);
    }

    private static float[] Random(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }
}
