using BenchmarkDotNet.Attributes;
using Palimpsest.Backends.Cpu;
using Palimpsest.Tensors;

namespace Palimpsest.Bench;

/// <summary>
/// Gemm.Sgemm c [M, N] = a [M, K] · b [K, N] (b [N, K] with suffix t) on all cores. The shapes are
/// square powers of two and GPT-2-small's: 128-token prefill through the MLP (128x3072x768,
/// 128x768x3072), the decode GEMVs (1x...), and the tied LM head at decode (1x50257x768t).
/// OpenBLAS (cblas_sgemm, 2 threads) is the baseline, measured in the same run right after the
/// engine at each shape; bench/peers/torch_cpu.py gives torch's numbers at the same shapes.
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
    private SimdBackend _backend = null!;
    private Tensor _ta = null!, _tbm = null!, _tc = null!;

    [GlobalSetup]
    public void Setup()
    {
        (_m, _n, _k, _tb) = GemmShape.Parse(Shape);
        var rng = new Random(1);
        _a = Fill(rng, _m * _k); _b = Fill(rng, _k * _n); _c = new float[_m * _n];
        OpenBlas.Threads(Environment.ProcessorCount);
        _backend = new SimdBackend();
        _ta = _backend.FromHost(_a, _m, _k);
        _tbm = _tb ? _backend.FromHost(_b, _n, _k) : _backend.FromHost(_b, _k, _n);
        _tc = _backend.Zeros(_m, _n);
        // Same answer from both, or the comparison is meaningless.
        var mine = new float[_m * _n];
        Gemm.Sgemm(false, _tb, _m, _n, _k, _a, _k, _b, _tb ? _k : _n, mine, _n, false);
        OpenBlas.Sgemm(_tb, _m, _n, _k, _a, _b, _c);
        double maxErr = 0, maxAbs = 0;
        for (int i = 0; i < mine.Length; i++) { maxErr = Math.Max(maxErr, Math.Abs(mine[i] - _c[i])); maxAbs = Math.Max(maxAbs, Math.Abs(_c[i])); }
        if (maxErr > 1e-4 * maxAbs) throw new InvalidOperationException($"engine and OpenBLAS disagree at {Shape}: max abs diff {maxErr:E2}");
        Console.WriteLine($"// OpenBLAS {OpenBlas.Config}; engine vs OpenBLAS max abs diff {maxErr:E2} (max |c| {maxAbs:E2})");
    }

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    internal static float[] Fill(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)rng.NextDouble() - 0.5f;
        return x;
    }

    [Benchmark]
    public void Sgemm() => Gemm.Sgemm(false, _tb, _m, _n, _k, _a, _k, _b, _tb ? _k : _n, _c, _n, false);

    /// <summary>The same GEMM through SimdBackend.MatMul: the model's path (the backend's own worker threads).</summary>
    [Benchmark]
    public void BackendMatMul() => _backend.MatMul(_ta, false, _tbm, _tb, _tc);

    [Benchmark(Baseline = true)]
    public void OpenBlasSgemm() => OpenBlas.Sgemm(_tb, _m, _n, _k, _a, _b, _c);
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
