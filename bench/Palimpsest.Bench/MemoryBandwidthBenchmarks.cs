using System.Numerics.Tensors;
using BenchmarkDotNet.Attributes;

namespace Palimpsest.Bench;

/// <summary>
/// The memory floor that decode timings are held against: a streaming read of 1 GiB of float32 (far
/// past the caches) on all cores, each summing its own contiguous half — what a GEMV over weights
/// that do not fit the cache can at best do. GB/s = 1.0737 / (mean seconds). A decode step's floor is
/// then the bytes of weights it reads ÷ this rate.
/// </summary>
public class MemoryBandwidthBenchmarks
{
    private const long Floats = 256L << 20; // 1 GiB
    private float[] _data = [];

    [GlobalSetup]
    public void Setup()
    {
        _data = GC.AllocateUninitializedArray<float>(checked((int)Floats));
        var rng = new Random(1);
        for (int i = 0; i < _data.Length; i += 4096) _data[i] = (float)rng.NextDouble(); // touch every page
    }

    [Benchmark]
    public float StreamRead1GiB()
    {
        int threads = Environment.ProcessorCount;
        var sums = new float[threads];
        long per = Floats / threads;
        Parallel.For(0, threads, t => sums[t] = TensorPrimitives.Sum(_data.AsSpan((int)(t * per), (int)per)));
        return sums.Sum();
    }
}
