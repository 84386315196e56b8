using BenchmarkDotNet.Attributes;
using Palimpsest.Backends.Cpu;

namespace Palimpsest.Bench;

/// <summary>
/// Gemm.Sgemm c [M, N] = a [M, K] · b [K, N] (b [N, K] with suffix t) on all cores. The shapes are
/// square powers of two and GPT-2-small's: 128-token prefill through the MLP (128x3072x768,
/// 128x768x3072), the decode GEMVs (1x...), and the tied LM head at decode (1x50257x768t).
/// Peer numbers: bench/peers/torch_cpu.py at the same shapes.
/// </summary>
[MemoryDiagnoser]
public class GemmBenchmarks
{
    [Params("128x128x128", "256x256x256", "512x512x512", "1024x1024x1024", "2048x2048x2048",
        "128x3072x768", "128x768x3072", "1x3072x768", "1x768x3072", "1x50257x768t")]
    public string Shape { get; set; } = "";

    private float[] _a = [], _b = [], _c = [];
    private int _m, _n, _k;
    private bool _tb;

    [GlobalSetup]
    public void Setup()
    {
        (_m, _n, _k, _tb) = GemmShape.Parse(Shape);
        var rng = new Random(1);
        _a = Fill(rng, _m * _k); _b = Fill(rng, _k * _n); _c = new float[_m * _n];
    }

    internal static float[] Fill(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)rng.NextDouble() - 0.5f;
        return x;
    }

    [Benchmark]
    public void Sgemm() => Gemm.Sgemm(false, _tb, _m, _n, _k, _a, _k, _b, _tb ? _k : _n, _c, _n, false);
}

/// <summary>The naive triple loop, at the small shapes only (it is ~100x slower).</summary>
public class GemmNaiveBenchmarks
{
    [Params("128x128x128", "256x256x256", "1x768x3072")]
    public string Shape { get; set; } = "";

    private float[] _a = [], _b = [], _c = [];
    private int _m, _n, _k;

    [GlobalSetup]
    public void Setup()
    {
        (_m, _n, _k, _) = GemmShape.Parse(Shape);
        var rng = new Random(1);
        _a = GemmBenchmarks.Fill(rng, _m * _k); _b = GemmBenchmarks.Fill(rng, _k * _n); _c = new float[_m * _n];
    }

    [Benchmark(Baseline = true)]
    public void SgemmNaive() => Gemm.SgemmNaive(false, false, _m, _n, _k, _a, _k, _b, _n, _c, _n, false);

    [Benchmark]
    public void Sgemm() => Gemm.Sgemm(false, false, _m, _n, _k, _a, _k, _b, _n, _c, _n, false);
}
