using Palimpsest.Cuda.Interop;

namespace Palimpsest.GpuBench;

/// <summary>Times device work with CUDA events on the legacy stream (the backend's stream).</summary>
public static class Timing
{
    /// <summary>Median milliseconds of <paramref name="reps"/> runs of <paramref name="work"/> after <paramref name="warmup"/> untimed ones.</summary>
    public static double MedianMs(Action work, int reps, int warmup = 1)
    {
        for (int i = 0; i < warmup; i++) work();
        using var start = new CudaEvent();
        using var end = new CudaEvent();
        var ms = new double[reps];
        for (int i = 0; i < reps; i++)
        {
            start.Record(null);
            work();
            end.Record(null);
            ms[i] = end.ElapsedSince(start);
        }
        Array.Sort(ms);
        return ms[reps / 2];
    }
}
