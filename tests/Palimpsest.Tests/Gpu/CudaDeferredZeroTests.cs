using Palimpsest.Backends.Cuda;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// CudaBackend.Zeros/Zero defer their memset to the tensor's first use and drop it when an op
/// overwrites the tensor whole. Each case reuses a cached buffer full of noise, so a fill that was
/// dropped where it was owed shows up as non-zero values.
/// </summary>
[Trait(Gpu.Trait, Gpu.TraitValue)]
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public class CudaDeferredZeroTests
{
    private const int R = 5, K = 7; // awkward sizes

    private static double[] Host(CudaBackend b, Tensor t) { var h = new double[t.Length]; b.ToHost(t, h); return h; }

    // Leaves a noisy [rows, cols] buffer in the backend's cache, so the next Zeros(rows, cols) reuses it.
    private static void Dirty(CudaBackend b, int rows, int cols)
    {
        using var t = b.Zeros(rows, cols);
        b.FillUniform(t, 11, 1f, 3f);
        b.Synchronize();
    }

    private static void AssertAll(double[] actual, Func<int, double> expected, string what)
    {
        for (int i = 0; i < actual.Length; i++)
            Assert.True(actual[i] == expected(i), $"{what}: element {i} is {actual[i]}, expected {expected(i)}");
    }

    [Fact]
    public void Zeros_read_back_as_zeros_from_a_reused_buffer()
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        Dirty(b, R, K);
        using var z = b.Zeros(R, K);
        AssertAll(Host(b, z), _ => 0, "Zeros read back");
    }

    [Fact]
    public void Accumulating_into_zeros_starts_from_zero()
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        var bias = Enumerable.Range(0, K).Select(i => 0.5 + i).ToArray();
        using var bt = b.FromHost(bias, K);
        Dirty(b, R, K);
        using var z = b.Zeros(R, K);
        b.AddBias(z, bt);
        AssertAll(Host(b, z), i => bias[i % K], "AddBias into Zeros");

        // MatMul with accumulate reads its output; without, it overwrites it.
        using var x = b.FromHost(Enumerable.Range(0, R * 3).Select(i => (double)(i % 4)).ToArray(), R, 3);
        using var w = b.FromHost(Enumerable.Range(0, 3 * K).Select(i => (double)(i % 3)).ToArray(), 3, K);
        var expected = new double[R * K];
        for (int i = 0; i < R; i++) for (int j = 0; j < K; j++) for (int k = 0; k < 3; k++) expected[i * K + j] += (i * 3 + k) % 4 * ((k * K + j) % 3);
        Dirty(b, R, K);
        using var acc = b.Zeros(R, K);
        b.MatMul(x, false, w, false, acc, accumulate: true);
        AssertAll(Host(b, acc), i => expected[i], "MatMul accumulate into Zeros");
        Dirty(b, R, K);
        using var over = b.Zeros(R, K);
        b.MatMul(x, false, w, false, over);
        AssertAll(Host(b, over), i => expected[i], "MatMul into Zeros");
    }

    [Fact]
    public void A_zeros_tensor_that_is_input_and_output_of_one_op_is_read_as_zeros()
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        Dirty(b, R, K);
        using var z = b.Zeros(R, K);
        b.Add(z, z, z);
        AssertAll(Host(b, z), _ => 0, "Add(z, z, z)");
    }

    [Fact]
    public void Writing_through_a_row_view_keeps_the_other_rows_zero()
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        using var src = b.FromHost(Enumerable.Repeat(2.0, 2 * K).ToArray(), 2, K);
        Dirty(b, R, K);
        using var z = b.Zeros(R, K);
        using (var view = b.RowPrefix(z, 3)) b.CopyRows(src, 0, view, 1, 2);
        AssertAll(Host(b, z), i => i / K is 1 or 2 ? 2 : 0, "rows 1-2 copied through a view, the rest zero");
    }

    [Fact]
    public void Zero_after_writes_clears_the_tensor()
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        using var t = b.Zeros(R, K);
        b.FillUniform(t, 3, 1f, 5f);
        b.Zero(t);
        AssertAll(Host(b, t), _ => 0, "Zero after FillUniform");
        using var view = b.RowPrefix(t, 2);
        b.FillUniform(t, 4, 1f, 5f);
        b.Zero(view);
        var h = Host(b, t);
        AssertAll(h[..(2 * K)], _ => 0, "Zero of a 2-row view");
        Assert.True(h[(2 * K)..].All(v => v >= 4 && v <= 6), "rows past the view keep their values");
    }
}
