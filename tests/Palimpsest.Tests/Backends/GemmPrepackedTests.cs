using System.Runtime.Intrinsics.X86;
using Palimpsest.Backends.Cpu;
using Palimpsest.Training;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// The prepacked GEMM (a weight's op(b) packed once into 32-column panels, multiplied by the AVX-512
/// 8x32 kernel) against <see cref="Gemm.SgemmNaive"/> on shapes off every block (8-row slivers,
/// 32-column panels, 64-column groups, the 256 k block, the 256-row pass), and bit for bit against
/// the GEMM that packs as it goes (same sums in the same order). Then the packed copy's lifetime in
/// <see cref="SimdBackend"/>: every way of writing a weight makes the next product see the new values.
/// </summary>
public class GemmPrepackedTests(ITestOutputHelper output)
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 2, 64, 1 }, { 7, 65, 5 }, { 8, 97, 255 }, { 9, 130, 257 }, { 127, 64, 600 },
        { 128, 200, 256 }, { 300, 96, 513 }, { 600, 70, 40 }, { 33, 1000, 31 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Prepacked_matches_naive_and_equals_the_packing_gemm_bitwise(int m, int n, int k)
    {
        if (!Avx512F.IsSupported) Assert.Skip("this CPU has no AVX-512: the prepacked GEMM is not used");
        using var workers = new SimdWorkers(2);
        foreach (var tb in new[] { false, true })
            foreach (var acc in new[] { false, true })
                foreach (var ta in new[] { false, true })
                {
                    var rng = new Random(HashCode.Combine(m, n, k, tb, acc, ta));
                    int lda = (ta ? m : k) + 1, ldb = (tb ? k : n) + 2, ldc = n + 3;
                    float[] a = Random(rng, (ta ? k : m) * lda), b = Random(rng, (tb ? n : k) * ldb), c0 = Random(rng, m * ldc);
                    var packed = new PackedWeight(k, n, tb);
                    unsafe { fixed (float* pb = b) Gemm.PackWeight(packed, pb, ldb, workers); }
                    float[] fast = (float[])c0.Clone(), slow = (float[])c0.Clone(), packing = (float[])c0.Clone();
                    Gemm.SgemmPrepacked(ta, m, n, k, a, lda, packed, fast, ldc, acc, 2, workers, null);
                    Gemm.SgemmNaive(ta, tb, m, n, k, a, lda, b, ldb, slow, ldc, acc);
                    Gemm.Sgemm(ta, tb, m, n, k, a, lda, b, ldb, packing, ldc, acc, Gemm.DefaultKernel, 2, workers);
                    var (worst, maxAbs, wi, wj) = GemmTests.Errors(m, n, k, ta, tb, acc, a, lda, b, ldb, c0, fast, slow, ldc);
                    string what = $"{m}x{n}x{k} transA={ta} transB={tb} acc={acc}";
                    Assert.True(worst <= 1e-5, $"prepacked {what}: max rel error {worst:E2} at ({wi}, {wj}), max abs error {maxAbs:E2}");
                    int diff = 0;
                    for (int i = 0; i < fast.Length; i++) if (BitConverter.SingleToInt32Bits(fast[i]) != BitConverter.SingleToInt32Bits(packing[i])) diff++;
                    Assert.True(diff == 0, $"prepacked {what}: {diff} elements differ from the packing GEMM (padding of c included)");
                    output.WriteLine($"{what}: max rel {worst:E2}, max abs {maxAbs:E2}, bitwise equal to the packing GEMM");
                }
    }

    [Fact]
    public void A_packed_weight_of_another_shape_is_refused()
    {
        var packed = new PackedWeight(10, 64, false);
        var e = Assert.Throws<ArgumentException>(() => Gemm.SgemmPrepacked(false, 4, 64, 11, new float[44], 11, packed, new float[256], 64, false, 1, null, null));
        Assert.Contains("does not match", e.Message);
    }

    // ---- the packed copy inside SimdBackend ----

    private const int T = 32, K = 70, N = 130;

    /// <summary>y = x · op(w) on the backend: the prefill-sized product that packs w (when a weight).</summary>
    private static float[] Product(SimdBackend be, Tensor x, Tensor w, bool transB)
    {
        using var y = be.Zeros(T, N);
        be.MatMul(x, false, w, transB, y);
        var h = new float[y.Length];
        be.ToHost(y, h);
        return h;
    }

    /// <summary>The same product with w's current values in a tensor that is not a weight (never packed).</summary>
    private static float[] Fresh(SimdBackend be, Tensor x, Tensor w, bool transB)
    {
        var h = new float[w.Length];
        be.ToHost(w, h);
        using var copy = be.FromHost(h, w.Shape);
        return Product(be, x, copy, transB);
    }

    private static void Same(float[] want, float[] got, string what)
    {
        double maxAbs = 0;
        for (int i = 0; i < want.Length; i++) maxAbs = Math.Max(maxAbs, Math.Abs(want[i] - got[i]));
        Assert.True(maxAbs == 0, $"{what}: max abs difference {maxAbs:E2} from the product over the weight's current values");
    }

    public static TheoryData<string> Writes => new() { "Upload", "Span", "Data", "Axpy", "RowPrefix view", "Zero", "AddToRow" };

    [Theory]
    [MemberData(nameof(Writes))]
    public void A_write_to_a_packed_weight_is_seen_by_the_next_product(string how)
    {
        if (!Avx512F.IsSupported) Assert.Skip("this CPU has no AVX-512: weights are not packed");
        using var be = new SimdBackend(2);
        var rng = new Random(7);
        foreach (var transB in new[] { false, true })
        {
            using var x = be.FromHost(Random(rng, T * K), T, K);
            using var w = be.Weight(Random(rng, K * N), transB ? [N, K] : [K, N]);
            var first = Product(be, x, w, transB);
            Assert.True(be.PackedWeightBytes == 0, "the first prefill-sized product packed the weight");
            var before = Product(be, x, w, transB);
            Assert.Equal(first, before);
            Same(Fresh(be, x, w, transB), before, $"{how}, before the write");
            Assert.True(be.PackedWeightBytes > 0, "the second product did not pack the weight");
            Write(be, (SimdTensor)w, how, rng);
            var after = Product(be, x, w, transB);
            Same(Fresh(be, x, w, transB), after, $"{how} (transB={transB})");
            Assert.NotEqual(before, after);
        }
    }

    private static void Write(SimdBackend be, SimdTensor w, string how, Random rng)
    {
        switch (how)
        {
            case "Upload": be.Upload(w, Random(rng, (int)w.Length).Select(v => (double)v).ToArray()); break;
            case "Span": w.Span[5] += 1; break;
            case "Data": w.Data[w.Cols + 3] -= 2; break;
            case "Axpy":
                using (var d = be.FromHost(Random(rng, (int)w.Length), w.Shape)) be.Axpy(0.5, d, w);
                break;
            case "RowPrefix view":
                using (var v = be.RowPrefix(w, 2)) be.Upload(v, new double[v.Length]);
                break;
            case "Zero": be.Zero(w); break;
            case "AddToRow":
                using (var r = be.FromHost(Random(rng, w.Cols), w.Cols)) be.AddToRow(w, 1, r);
                break;
            default: throw new ArgumentException(how);
        }
    }

    [Fact]
    public void An_AdamW_step_is_seen_by_the_next_product()
    {
        if (!Avx512F.IsSupported) Assert.Skip("this CPU has no AVX-512: weights are not packed");
        using var be = new SimdBackend(2);
        var rng = new Random(3);
        using var x = be.FromHost(Random(rng, T * K), T, K);
        using var w = be.Weight(Random(rng, K * N), K, N);
        using var gain = be.Weight(Random(rng, K), K);
        var adam = new AdamW(new Palimpsest.Models.ParamSet<Tensor> { Wte = w, Blocks = [], LnFG = gain, Head = w });
        Product(be, x, w, false);
        var before = Product(be, x, w, false); // the second packs
        Assert.True(be.PackedWeightBytes > 0, "the second product did not pack the weight");
        // AdamW writes through storage it took at construction, not through Data
        using var g = be.FromHost(Random(rng, K * N), K, N);
        using var gg = be.FromHost(Random(rng, K), K);
        adam.Step(new Palimpsest.Models.ParamSet<Tensor> { Wte = g, Blocks = [], LnFG = gg, Head = g }, lr: 0.1, weightDecay: 0, clipNorm: 0);
        var after = Product(be, x, w, false);
        Same(Fresh(be, x, w, false), after, "after an AdamW step");
        Assert.NotEqual(before, after);
    }

    [Fact]
    public void The_budget_bounds_packed_copies_and_disposing_a_weight_returns_its_bytes()
    {
        if (!Avx512F.IsSupported) Assert.Skip("this CPU has no AVX-512: weights are not packed");
        var rng = new Random(5);
        using var off = new SimdBackend(2) { PackedWeightBudget = 0 };
        using var x0 = off.FromHost(Random(rng, T * K), T, K);
        using var w0 = off.Weight(Random(rng, K * N), K, N);
        Product(off, x0, w0, false);
        var y0 = Product(off, x0, w0, false);
        Assert.Equal(0, off.PackedWeightBytes);
        Same(Fresh(off, x0, w0, false), y0, "budget 0");

        long one = PackedWeight.BytesFor(K, N);
        using var be = new SimdBackend(2) { PackedWeightBudget = one + 100 };
        using var x = be.FromHost(Random(rng, T * K), T, K);
        var w1 = be.Weight(Random(rng, K * N), K, N);
        using var w2 = be.Weight(Random(rng, K * N), K, N);
        Product(be, x, w1, false);
        Product(be, x, w1, false);
        Assert.Equal(one, be.PackedWeightBytes);
        Product(be, x, w2, false);
        Same(Fresh(be, x, w2, false), Product(be, x, w2, false), "over the budget"); // runs unpacked
        Assert.Equal(one, be.PackedWeightBytes);
        var sibling = (SimdBackend)be.CreateSibling(1);
        Assert.Equal(be.PackedWeightBudget, sibling.PackedWeightBudget); // one budget for the family
        w1.Dispose();
        Assert.Equal(0, be.PackedWeightBytes);
        Product(be, x, w2, false); // now there is room
        Assert.Equal(one, be.PackedWeightBytes);
        sibling.Dispose();
    }

    /// <summary>Runs an action on its first pass only (as a host's edit waits at the gate for the op in flight).</summary>
    private sealed class WriteOnce(Action write) : Palimpsest.Backends.IOpGate
    {
        private Action? _write = write;
        public void Pass() { var w = _write; _write = null; w?.Invoke(); }
    }

    [Fact]
    public void Linear3_packs_its_weights_on_the_second_prefill_and_sees_a_write_made_at_the_gate()
    {
        if (!Avx512F.IsSupported) Assert.Skip("this CPU has no AVX-512: weights are not packed");
        using var be = new SimdBackend(2);
        Palimpsest.Backends.IFusedLinear fused = be;
        var rng = new Random(9);
        using var x = be.FromHost(Random(rng, T * K), T, K);
        using var wq = be.Weight(Random(rng, K * N), K, N);
        using var wk = be.Weight(Random(rng, K * 70), K, 70);
        using var wv = be.Weight(Random(rng, K * N), K, N);
        using var bq = be.FromHost(Random(rng, N), N);
        Tensor yq = be.Zeros(T, N), yk = be.Zeros(T, 70), yv = be.Zeros(T, N);
        fused.Linear3(x, wq, bq, yq, wk, null, yk, wv, null, yv);
        Assert.True(be.PackedWeightBytes == 0, $"the first Linear3 packed {be.PackedWeightBytes} bytes: a weight's prefills were counted twice");
        fused.Linear3(x, wq, bq, yq, wk, null, yk, wv, null, yv);
        Assert.Equal(2 * PackedWeight.BytesFor(K, N) + PackedWeight.BytesFor(K, 70), be.PackedWeightBytes);

        // a write made while the op waits at the gate: the product must read it, not the copy made before
        var fresh = Random(rng, K * N);
        be.Gate = new WriteOnce(() => be.Upload(wq, fresh.Select(v => (double)v).ToArray()));
        fused.Linear3(x, wq, null, yq, wk, null, yk, wv, null, yv); // the third: one GEMM over the three copies
        be.Gate = null;
        var got = new float[yq.Length];
        be.ToHost(yq, got);
        Same(Fresh(be, x, wq, false), got, "Linear3 after a write at the gate");
        yq.Dispose(); yk.Dispose(); yv.Dispose();
    }

    private static float[] Random(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }
}
