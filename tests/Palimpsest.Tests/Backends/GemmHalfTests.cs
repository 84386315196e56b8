using Palimpsest.Backends.Cpu;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// <see cref="Gemm.SgemmHalf(bool,bool,int,int,int,ReadOnlySpan{float},int,ReadOnlySpan{ushort},int,DType,Span{float},int,bool)"/>
/// (b stored as bf16 / fp16 bits, widened inside the packing and the GEMV) against the float32
/// <see cref="Gemm.Sgemm(bool,bool,int,int,int,ReadOnlySpan{float},int,ReadOnlySpan{float},int,Span{float},int,bool)"/>
/// fed the same values widened: both compute in float32 from identical operands, so only the
/// summation order may differ (the GEMV's) and the bound is that of <see cref="GemmTests"/>
/// (1e-5 of Σ|a|·|b|). M = 1 is the GEMV (dots for transB, axpys otherwise), M ≥ 2 the blocked path.
/// </summary>
public class GemmHalfTests(ITestOutputHelper output)
{
    public static TheoryData<int, int, int> Shapes => new()
    {
        { 1, 1, 1 }, { 1, 301, 257 }, { 1, 4099, 19 }, { 2, 17, 33 }, { 7, 13, 5 }, { 7, 129, 300 },
        { 128, 65, 131 }, { 128, 4100, 9 }, { 13, 17, 1 },
        // GEMVs big enough to run threaded: split over k for b [K, N] (partial rows of c summed after);
        // one row of b at a time or four, by width, as in GemmTests
        { 1, 1030, 771 }, { 1, 9000, 130 }, { 1, 37, 2100 }, { 1, 70001, 3 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Half_b_matches_float32_on_the_widened_values(int m, int n, int k)
    {
        foreach (var kind in new[] { DType.BF16, DType.F16 })
            foreach (var ta in new[] { false, true })
                foreach (var tb in new[] { false, true })
                    foreach (var acc in new[] { false, true })
                        Check(m, n, k, ta, tb, acc, kind, pad: (m + n) % 3);
    }

    [Fact]
    public void Blocked_path_packs_exactly_the_widened_floats()
    {
        // Same packed panels, same micro-kernel, same order: bit-identical to the float32 GEMM.
        foreach (var kind in new[] { DType.BF16, DType.F16 })
            foreach (var tb in new[] { false, true })
            {
                var (a, b16, wide, lda, ldb) = Operands(new Random(7), 37, 45, 300, false, tb, kind, pad: 2);
                var c16 = new float[37 * 45]; var c32 = new float[37 * 45];
                Gemm.SgemmHalf(false, tb, 37, 45, 300, a, lda, b16, ldb, kind, c16, 45, false);
                Gemm.Sgemm(false, tb, 37, 45, 300, a, lda, wide, ldb, c32, 45, false);
                Assert.True(c16.AsSpan().SequenceEqual(c32), $"{kind} transB={tb}: blocked 16-bit GEMM differs from the float32 GEMM on the widened b");
            }
    }

    [Fact]
    public void Every_fp16_and_bf16_bit_pattern_widens_exactly()
    {
        var bits = new ushort[65536 + 8];
        for (int i = 0; i < 65536; i++) bits[i] = (ushort)i;
        // a [1, 1] = 1 times b [1, N]: the GEMV axpy path returns b widened, including subnormals, inf and NaN.
        foreach (var kind in new[] { DType.BF16, DType.F16 })
        {
            var c = new float[65536];
            Gemm.SgemmHalf(false, false, 1, 65536, 1, [1f], 1, bits.AsSpan(0, 65536), 65536, kind, c, 65536, false);
            for (int i = 0; i < 65536; i++)
            {
                float want = kind == DType.BF16 ? HalfConvert.BF16ToF32((ushort)i) : (float)BitConverter.UInt16BitsToHalf((ushort)i);
                if (float.IsNaN(want)) Assert.True(float.IsNaN(c[i]), $"{kind} 0x{i:X4}: NaN widened to {c[i]}");
                else Assert.True(BitConverter.SingleToUInt32Bits(want) == BitConverter.SingleToUInt32Bits(c[i]) || (want == 0 && c[i] == 0),
                    $"{kind} 0x{i:X4}: widened to {c[i]:R}, expected {want:R}");
            }
        }
    }

    [Fact]
    public void Bad_kind_and_short_b_are_rejected_with_one_line()
    {
        var e = Assert.Throws<ArgumentException>(() => Gemm.SgemmHalf(false, false, 1, 2, 2, new float[2], 2, new ushort[4], 2, DType.F32, new float[2], 2, false));
        Assert.Contains("BF16 or F16", e.Message);
        e = Assert.Throws<ArgumentException>(() => Gemm.SgemmHalf(false, false, 1, 2, 2, new float[2], 2, new ushort[3], 2, DType.BF16, new float[2], 2, false));
        Assert.Contains("GEMM b", e.Message);
    }

    private static (float[] A, ushort[] B16, float[] Wide, int Lda, int Ldb) Operands(Random rng, int m, int n, int k, bool ta, bool tb, DType kind, int pad)
    {
        int aRows = ta ? k : m, aCols = ta ? m : k, bRows = tb ? n : k, bCols = tb ? k : n;
        int lda = aCols + pad, ldb = bCols + pad;
        var a = new float[aRows * lda];
        for (int i = 0; i < a.Length; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        var b16 = new ushort[bRows * ldb]; var wide = new float[b16.Length];
        for (int i = 0; i < b16.Length; i++)
        {
            float v = (float)(rng.NextDouble() * 2 - 1);
            b16[i] = kind == DType.BF16 ? HalfConvert.F32ToBF16(v) : BitConverter.HalfToUInt16Bits((Half)v);
            wide[i] = kind == DType.BF16 ? HalfConvert.BF16ToF32(b16[i]) : (float)BitConverter.UInt16BitsToHalf(b16[i]);
        }
        return (a, b16, wide, lda, ldb);
    }

    private void Check(int m, int n, int k, bool ta, bool tb, bool accumulate, DType kind, int pad)
    {
        var rng = new Random(HashCode.Combine(m, n, k, ta, tb, accumulate, kind));
        var (a, b16, wide, lda, ldb) = Operands(rng, m, n, k, ta, tb, kind, pad);
        int ldc = n + pad;
        var c0 = new float[m * ldc];
        for (int i = 0; i < c0.Length; i++) c0[i] = (float)(rng.NextDouble() * 2 - 1);
        var fast = (float[])c0.Clone(); var slow = (float[])c0.Clone();
        Gemm.SgemmHalf(ta, tb, m, n, k, a, lda, b16, ldb, kind, fast, ldc, accumulate);
        Gemm.Sgemm(ta, tb, m, n, k, a, lda, wide, ldb, slow, ldc, accumulate);

        var (worst, maxAbs, wi, wj) = GemmTests.Errors(m, n, k, ta, tb, accumulate, a, lda, wide, ldb, c0, fast, slow, ldc);
        Assert.True(worst <= 1e-5,
            $"SgemmHalf {kind} {m}x{n}x{k} transA={ta} transB={tb} acc={accumulate} pad={pad}: max rel error {worst:E2} at ({wi}, {wj}), max abs error {maxAbs:E2}");
        output.WriteLine($"{kind} {m}x{n}x{k} tA={ta} tB={tb} acc={accumulate}: max rel {worst:E2}, max abs {maxAbs:E2}");
        for (int i = 0; i < m; i++)
            for (int j = n; j < ldc; j++)
                Assert.True(fast[i * ldc + j] == c0[i * ldc + j], $"SgemmHalf wrote the padding of c at ({i}, {j})");
    }
}
