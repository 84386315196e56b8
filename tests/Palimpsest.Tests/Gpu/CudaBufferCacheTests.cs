using Palimpsest.Backends.Cuda;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// The CUDA backend's buffer cache: over its cap, the buffer freed last is kept and cached buffers
/// of other sizes are freed to make room (a graph recording draws on what the pass before it freed).
/// </summary>
[Trait(Gpu.Trait, Gpu.TraitValue)]
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public class CudaBufferCacheTests
{
    [Fact]
    public void Over_the_cap_the_last_freed_buffer_evicts_older_sizes()
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        const int floatsA = 300_000, floatsB = 350_000; // 1.2 MB and 1.4 MB
        b.MaxCachedBytes = 2_000_000;
        using (b.Zeros(floatsA)) { }
        Assert.Equal(1, b.CachedBuffers.GetValueOrDefault(floatsA * 4L));
        using (b.Zeros(floatsB)) { }
        Assert.Equal(0, b.CachedBuffers.GetValueOrDefault(floatsA * 4L));
        Assert.Equal(1, b.CachedBuffers.GetValueOrDefault(floatsB * 4L));
        // a buffer larger than the whole cap is freed, and evicts nothing
        using (b.Zeros(600_000)) { }
        Assert.Equal(1, b.CachedBuffers.GetValueOrDefault(floatsB * 4L));
        Assert.Equal(0, b.CachedBuffers.GetValueOrDefault(2_400_000L));
    }
}
