using Palimpsest.Cuda.Interop;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// The error text of a driver/cuBLAS call is built only when the call failed (runs without a GPU:
/// Check is pure managed code).
/// </summary>
public class CallDescriptionTests
{
    [Fact]
    public void A_successful_call_formats_nothing()
    {
        int formatted = 0;
        int Count() => ++formatted;
        CuDriver.Check(0, $"cuLaunchKernel(x, grid {Count()})");
        Cublas.Check(0, $"cublasSgemm_v2(M={Count()})");
        Assert.Equal(0, formatted);
    }

    [Fact]
    public void A_failed_call_names_itself_with_its_arguments()
    {
        int m = 17;
        var e = Assert.Throws<CudaException>(() => Cublas.Check(7, $"cublasSgemm_v2(M={m}, N={m + 1})"));
        Assert.Contains("cublasSgemm_v2(M=17, N=18)", e.Message);
        Assert.Contains("CUBLAS_STATUS_INVALID_VALUE", e.Message);
        var d = Assert.Throws<CudaException>(() => CuDriver.Check(2, $"cuMemAlloc_v2({m} bytes)"));
        Assert.Contains("cuMemAlloc_v2(17 bytes)", d.Message);
    }
}
