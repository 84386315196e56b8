using Palimpsest.Backends.Cpu;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// <see cref="SimdBackend.Weight(ReadOnlySpan{float}, int[])"/> puts large weights in uninitialised
/// storage advised for huge pages (<c>HugePages</c>): every element must still be the source's,
/// on both sides of the size at which that starts, and the float64 overload must round as
/// <see cref="SimdBackend.FromHost(ReadOnlySpan{double}, int[])"/> does.
/// </summary>
public class SimdWeightStorageTests
{
    [Theory]
    [InlineData(7, 13)]          // small: an ordinary array
    [InlineData(1031, 2049)]     // 8.06 MiB: huge-page storage, not a multiple of 2 MiB
    public void Weight_holds_exactly_the_source(int rows, int cols)
    {
        using var be = new SimdBackend(1);
        var rng = new Random(rows);
        var f32 = new float[rows * cols];
        var f64 = new double[rows * cols];
        for (int i = 0; i < f32.Length; i++) { f64[i] = rng.NextDouble() * 2 - 1 + 1e-9; f32[i] = (float)(f64[i] * 3); }
        var w32 = (SimdTensor)be.Weight(f32, rows, cols);
        var w64 = (SimdTensor)be.Weight(f64, rows, cols);
        var want64 = (SimdTensor)be.FromHost(f64, rows, cols);
        Assert.Equal(new[] { rows, cols }, w32.Shape);
        int bad32 = -1, bad64 = -1;
        for (int i = 0; i < f32.Length && (bad32 < 0 || bad64 < 0); i++)
        {
            if (bad32 < 0 && BitConverter.SingleToUInt32Bits(w32.Span[i]) != BitConverter.SingleToUInt32Bits(f32[i])) bad32 = i;
            if (bad64 < 0 && BitConverter.SingleToUInt32Bits(w64.Span[i]) != BitConverter.SingleToUInt32Bits(want64.Span[i])) bad64 = i;
        }
        Assert.True(bad32 < 0, $"float32 weight differs first at element {bad32}");
        Assert.True(bad64 < 0, $"float64 weight differs from FromHost's rounding first at element {bad64}");
    }
}
