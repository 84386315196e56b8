using Palimpsest.Cuda.Interop;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// Gate of every GPU test: skips with the probe's reason ("no CUDA device: libcuda.so.1 not
/// found") on a machine without CUDA, and fails instead when REQUIRE_GPU=1 (the device script),
/// so that a missing GPU can never pass silently where one is expected.
/// </summary>
public static class Gpu
{
    public const string Trait = "Category";
    public const string TraitValue = "Gpu";

    public static bool Required => Environment.GetEnvironmentVariable("REQUIRE_GPU") == "1";

    public static CudaProbe SkipIfUnavailable()
    {
        var p = global::Palimpsest.Cuda.Interop.Cuda.Probe();
        if (p.Available) return p;
        if (Required) Assert.Fail($"REQUIRE_GPU=1 but {p.Reason}");
        Assert.Skip(p.Reason);
        return p; // unreachable: Assert.Skip throws
    }
}

/// <summary>
/// Every test class that drives the GPU runs in this one collection, one test at a time: a CUDA
/// graph recording (decode steps, replayed v* steps) is invalidated by a context-wide
/// synchronisation from another thread, which parallel test classes would issue at random.
/// </summary>
[CollectionDefinition(Name)]
public sealed class CudaCollection
{
    public const string Name = "CUDA device";
}

