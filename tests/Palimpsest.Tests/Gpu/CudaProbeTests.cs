using Palimpsest.Backends.Cuda;
using Palimpsest.Cuda.Interop;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// What happens with and without a device: the probe never throws, the backend refuses with the
/// probe's reason, and failed driver calls name the call and the CUDA error. These run everywhere
/// (the branch taken depends on the machine, and each branch asserts something).
/// </summary>
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public class CudaProbeTests
{
    private static CudaProbe Probe() => global::Palimpsest.Cuda.Interop.Cuda.Probe();

    [Fact]
    public void Probe_answers_without_throwing_and_is_cached()
    {
        var p = Probe();
        Assert.Same(p, Probe());
        if (p.Available)
        {
            Assert.False(string.IsNullOrEmpty(p.DeviceName));
            Assert.True(p.TotalMemory > 0 && p.Multiprocessors > 0, p.ToString());
        }
        else
            Assert.StartsWith("no CUDA device: ", p.Reason);
    }

    [Fact]
    public void Backend_construction_without_a_device_throws_the_probe_reason()
    {
        var p = Probe();
        if (p.Available)
        {
            using var b = new CudaBackend();
            Assert.Equal("cuda-f32", b.Name);
            return;
        }
        var e = Assert.Throws<CudaUnavailableException>(() => new CudaBackend());
        Assert.Equal(p.Reason, e.Message);
    }

    [Fact]
    public void CudaException_names_the_call_and_the_error()
    {
        var e = Assert.Throws<CudaException>(() => CuDriver.Check(2, "cuMemAlloc_v2(1073741824 bytes)"));
        Assert.Equal("cuMemAlloc_v2(1073741824 bytes)", e.Call);
        Assert.Equal(2, e.Code);
        // Without libcuda the driver cannot name the code, and the number stands in for the name.
        Assert.Equal(Probe().Available ? "CUDA_ERROR_OUT_OF_MEMORY" : "CUresult 2", e.ErrorName);
        Assert.Equal($"cuMemAlloc_v2(1073741824 bytes): {e.ErrorName}", e.Message);
        var b = Assert.Throws<CudaException>(() => Cublas.Check(13, "cublasSgemm_v2(M=1, N=1, K=1)"));
        Assert.Equal("cublasSgemm_v2(M=1, N=1, K=1): CUBLAS_STATUS_EXECUTION_FAILED", b.Message);
    }

    [Fact]
    [Trait(Gpu.Trait, Gpu.TraitValue)]
    public void A_too_large_allocation_fails_with_out_of_memory()
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        var e = Assert.Throws<CudaException>(() => b.Zeros(1 << 30, 1 << 14)); // 64 TiB
        Assert.Contains("CUDA_ERROR_OUT_OF_MEMORY", e.Message);
        Assert.StartsWith("cuMemAllocAsync(70368744177664 bytes)", e.Message);
    }
}
