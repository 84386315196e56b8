using BenchmarkDotNet.Attributes;

namespace Palimpsest.Bench;

/// <summary>
/// The memory floor that decode timings are held against: <see cref="StreamRead"/>'s streaming read
/// of 1 GiB of float32 on all cores. GB/s = 1.0737 / (mean seconds). A decode step's floor is then
/// the bytes of weights it reads ÷ this rate.
/// </summary>
public class MemoryBandwidthBenchmarks
{
    private float[] _data = [];

    [GlobalSetup]
    public void Setup() => _data = StreamRead.Allocate();

    [Benchmark]
    public float StreamRead1GiB() => StreamRead.Sum(_data);
}
