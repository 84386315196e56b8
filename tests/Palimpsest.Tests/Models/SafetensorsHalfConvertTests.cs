using Palimpsest.Tensors;

namespace Palimpsest.Tests.Models;

/// <summary>HalfConvert (used by the safetensors reader/writer): the vectorised span paths
/// against scalar references, and the scalars against independent arithmetic.</summary>
public class SafetensorsHalfConvertTests
{
    /// <summary>Value of a binary16/bfloat16 bit pattern by the format's definition.</summary>
    private static double Decode(ushort bits, int expBits, int manBits)
    {
        int sign = bits >> 15, e = (bits >> manBits) & ((1 << expBits) - 1), m = bits & ((1 << manBits) - 1);
        int bias = (1 << (expBits - 1)) - 1;
        double v = e == 0 ? m * Math.Pow(2, 1 - bias - manBits)
            : e == (1 << expBits) - 1 ? (m == 0 ? double.PositiveInfinity : double.NaN)
            : (1 + m / (double)(1 << manBits)) * Math.Pow(2, e - bias);
        return sign == 1 ? -v : v;
    }

    private static void AssertSameFloats(ReadOnlySpan<double> want, ReadOnlySpan<float> got, string what)
    {
        for (int i = 0; i < want.Length; i++)
        {
            bool same = double.IsNaN(want[i]) ? float.IsNaN(got[i])
                : want[i] == got[i] && double.IsNegative(want[i]) == float.IsNegative(got[i]);
            Assert.True(same, $"{what}: pattern 0x{i:x4} should be {want[i]:R}, got {got[i]:R}");
        }
    }

    [Fact]
    public void F16ToF32IsExactForAllPatterns()
    {
        var bits = new ushort[0x10000];
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)i;
        var got = new float[bits.Length];
        HalfConvert.F16ToF32(bits, got);
        AssertSameFloats(Array.ConvertAll(bits, b => Decode(b, 5, 10)), got, "f16");
    }

    [Fact]
    public void BF16ToF32IsExactForAllPatterns()
    {
        var bits = new ushort[0x10000];
        for (int i = 0; i < bits.Length; i++) bits[i] = (ushort)i;
        // Offset by one so the vector loop runs over unaligned, odd-length spans as well.
        var got = new float[bits.Length - 1];
        HalfConvert.BF16ToF32(bits.AsSpan(1), got);
        var want = Array.ConvertAll(bits[1..], b => Decode(b, 8, 7));
        for (int i = 0; i < want.Length; i++)
        {
            bool same = double.IsNaN(want[i]) ? float.IsNaN(got[i]) : want[i] == got[i] && double.IsNegative(want[i]) == float.IsNegative(got[i]);
            Assert.True(same, $"bf16 pattern 0x{i + 1:x4} should be {want[i]:R}, got {got[i]:R}");
            Assert.Equal(got[i], HalfConvert.BF16ToF32(bits[i + 1]));
        }
    }

    private static float[] RandomBits(int n, int seed)
    {
        var r = new Random(seed);
        var x = new float[n];
        for (int i = 0; i < n; i++)
            x[i] = (i % 4) switch
            {
                0 => BitConverter.Int32BitsToSingle(r.Next() | (r.Next(2) << 31)),
                // Exact ties for bf16: the low 16 bits are 0x8000.
                1 => BitConverter.Int32BitsToSingle((r.Next() & ~0xFFFF) | 0x8000),
                2 => (float)((r.NextDouble() - 0.5) * 1e5),
                _ => (float)((r.NextDouble() - 0.5) * 1e-6),
            };
        return x;
    }

    /// <summary>Nearest bf16 to a finite f32 by comparing distances to the two neighbours (ties to even).</summary>
    private static double NearestBF16(float x)
    {
        uint u = BitConverter.SingleToUInt32Bits(x);
        uint lo = u & 0xFFFF_0000, hi = lo + 0x1_0000;
        double dl = Math.Abs((double)BitConverter.UInt32BitsToSingle(lo) - x);
        // hi may be the inf pattern: IEEE rounding treats it as 2^128 (unbounded exponent), then overflows.
        double hv = Decode((ushort)(hi >> 16), 8, 7);
        double dh = Math.Abs((double.IsInfinity(hv) ? Math.CopySign(Math.Pow(2, 128), hv) : hv) - x);
        bool pickHi = dh < dl || (dh == dl && ((lo >> 16) & 1) == 1);
        return pickHi ? Decode((ushort)(hi >> 16), 8, 7) : BitConverter.UInt32BitsToSingle(lo);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(33)]
    [InlineData(20011)]
    public void F32ToBF16RoundsToNearestEven(int n)
    {
        var x = RandomBits(n, n);
        if (n > 20) { x[3] = float.NaN; x[5] = float.PositiveInfinity; x[6] = -float.MaxValue; x[9] = float.Epsilon; x[11] = -0f; }
        var got = new ushort[n];
        HalfConvert.F32ToBF16(x, got);
        for (int i = 0; i < n; i++)
        {
            Assert.True(got[i] == HalfConvert.F32ToBF16(x[i]), $"element {i} ({x[i]:R}): vector 0x{got[i]:x4}, scalar 0x{HalfConvert.F32ToBF16(x[i]):x4}");
            double v = Decode(got[i], 8, 7);
            if (float.IsNaN(x[i])) { Assert.True(double.IsNaN(v), $"element {i}: NaN became {v}"); continue; }
            double want = float.IsInfinity(x[i]) ? x[i] : NearestBF16(x[i]);
            Assert.True(want == v && double.IsNegative(want) == double.IsNegative(v), $"element {i} ({x[i]:R}): want {want:R}, got {v:R}");
        }
    }

    [Theory]
    [InlineData(5)]
    [InlineData(20011)]
    public void F32ToF16MatchesScalarHalfCast(int n)
    {
        var x = RandomBits(n, 100 + n);
        var got = new Half[n];
        HalfConvert.F32ToF16(x, got);
        for (int i = 0; i < n; i++)
        {
            Half want = (Half)x[i];
            bool same = Half.IsNaN(want) ? Half.IsNaN(got[i]) : BitConverter.HalfToUInt16Bits(want) == BitConverter.HalfToUInt16Bits(got[i]);
            Assert.True(same, $"element {i} ({x[i]:R}): vector {got[i]}, scalar {want}");
        }
    }

    [Fact]
    public void ScalarHalfCastRoundsToNearestEven()
    {
        // Checks System.Half's rounding, which the writer relies on, against a scan of all patterns.
        var finite = Enumerable.Range(0, 0x10000).Select(b => Decode((ushort)b, 5, 10)).Where(double.IsFinite).Distinct().Order().ToArray();
        var r = new Random(5);
        for (int k = 0; k < 3000; k++)
        {
            // Values between neighbours, including exact midpoints.
            int j = r.Next(finite.Length - 1);
            double a = finite[j], b = finite[j + 1];
            float x = (float)(k % 3 == 0 ? (a + b) / 2 : a + (b - a) * r.NextDouble());
            double got = (double)(Half)x;
            double dl = Math.Abs(x - a), dh = Math.Abs(b - x);
            bool aEven = (BitConverter.HalfToUInt16Bits((Half)a) & 1) == 0;
            double want = dl < dh ? a : dh < dl ? b : aEven ? a : b;
            Assert.True(want == got, $"{x:R} between {a:R} and {b:R}: want {want:R}, got {got:R}");
        }
    }

    [Fact]
    public void RejectsMismatchedLengths()
    {
        Assert.Throws<ArgumentException>(() => HalfConvert.BF16ToF32(new ushort[3], new float[4]));
        Assert.Throws<ArgumentException>(() => HalfConvert.F32ToBF16(new float[3], new ushort[2]));
        Assert.Throws<ArgumentException>(() => HalfConvert.F16ToF32(new Half[3], new float[2]));
        Assert.Throws<ArgumentException>(() => HalfConvert.F32ToF16(new float[3], new Half[2]));
    }
}
