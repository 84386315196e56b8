using System.Diagnostics;
using System.Numerics.Tensors;

namespace Palimpsest.Bench;

/// <summary>
/// The streaming-read measurement that decode timings are held against, in one place for the
/// BenchmarkDotNet benchmark (<see cref="MemoryBandwidthBenchmarks"/>) and the scale run
/// (<see cref="ScaleRun"/>): 1 GiB of float32 (far past the caches) summed on all cores, each
/// core its own contiguous share — what a GEMV over weights that do not fit the cache can at best do.
/// </summary>
internal static class StreamRead
{
    /// <summary>The floats read: 1 GiB.</summary>
    public const int Floats = 256 << 20;

    /// <summary>The buffer, with every page touched so that the first read does not time page faults.</summary>
    public static float[] Allocate()
    {
        var data = GC.AllocateUninitializedArray<float>(Floats);
        for (int i = 0; i < data.Length; i += 1024) data[i] = i; // 1024 floats: one 4 KiB page
        return data;
    }

    /// <summary>One read of all of data: each core sums its share; the total keeps the sums from being optimised away.</summary>
    public static float Sum(float[] data)
    {
        int threads = Environment.ProcessorCount;
        var sums = new float[threads];
        long per = data.Length / threads;
        Parallel.For(0, threads, t => sums[t] = TensorPrimitives.Sum(data.AsSpan((int)(t * per), (int)per)));
        return sums.Sum();
    }

    /// <summary>GB/s of the fastest of `reads` reads of data, after one read that warms the threads up.</summary>
    public static double BestGBps(float[] data, int reads)
    {
        double best = double.MaxValue;
        for (int rep = 0; rep <= reads; rep++)
        {
            var sw = Stopwatch.StartNew();
            Sum(data);
            if (rep > 0) best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return data.LongLength * sizeof(float) / best / 1e9;
    }
}
