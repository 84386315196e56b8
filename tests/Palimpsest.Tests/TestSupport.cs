using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Backends.Cuda;
using Palimpsest.Tensors;

namespace Palimpsest.Tests;

/// <summary>Paths to committed fixtures and to ../shared beside the repository.</summary>
public static class Paths
{
    public static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "fixtures", name);

    /// <summary>The repository root (the folder holding Engine.sln).</summary>
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException("Engine.sln not found above " + AppContext.BaseDirectory);
        }
    }

    /// <summary>../shared (models, datasets), or PALIMPSEST_SHARED.</summary>
    public static string Shared => Environment.GetEnvironmentVariable("PALIMPSEST_SHARED") is { Length: > 0 } s ? s
        : Path.Combine(Path.GetDirectoryName(RepoRoot)!, "shared");

    /// <summary>A folder under ../shared, or a skip naming what is missing.</summary>
    public static string SharedOrSkip(string relative)
    {
        var p = Path.Combine(Shared, relative);
        if (!Directory.Exists(p) && !File.Exists(p)) Assert.Skip($"{p} not present (the shared data folder beside the repository)");
        return p;
    }
}

/// <summary>
/// The backends tests run over by name: the CPU ones every engine test runs over, and CUDA with
/// float32, float16 or bfloat16 weights, whose creation skips the test with the probe's reason on
/// a machine without a device (and fails under REQUIRE_GPU=1).
/// </summary>
public static class TestBackends
{
    public static IBackend Create(string kind) => kind switch
    {
        "f64" => new ReferenceBackend(),
        "f32" => new SimdBackend(),
        "cuda-f32" => CudaOrSkip(DType.F32),
        "cuda-f16" => CudaOrSkip(DType.F16),
        "cuda-bf16" => CudaOrSkip(DType.BF16),
        _ => throw new ArgumentException("unknown backend " + kind),
    };

    public static readonly string[] Cpu = ["f64", "f32"];

    /// <summary>CUDA by weight storage.</summary>
    public static readonly string[] Cuda = ["cuda-f32", "cuda-f16", "cuda-bf16"];

    private static CudaBackend CudaOrSkip(DType weightStorage)
    {
        Gpu.Gpu.SkipIfUnavailable();
        return new CudaBackend(weightStorage);
    }
}

public static class Num
{
    /// <summary>||a − b|| / ||b||.</summary>
    public static double RelErr(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"lengths differ: {a.Length} vs {b.Length}");
        double num = 0, den = 0;
        for (int i = 0; i < a.Length; i++) { num += (a[i] - b[i]) * (a[i] - b[i]); den += b[i] * b[i]; }
        return Math.Sqrt(num) / Math.Max(Math.Sqrt(den), 1e-300);
    }

    /// <summary>"rel 1.2e-10, max abs 3e-11 at 17, max rel 4e-9" for failure messages.</summary>
    public static string Describe(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double maxAbs = 0, maxRel = 0; int at = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double e = Math.Abs(a[i] - b[i]);
            if (e > maxAbs) { maxAbs = e; at = i; }
            maxRel = Math.Max(maxRel, e / Math.Max(Math.Abs(b[i]), 1e-12));
        }
        return $"rel {RelErr(a, b):E2}, max abs {maxAbs:E2} at {at}, max rel {maxRel:E2}";
    }

    public static void AssertClose(ReadOnlySpan<double> actual, ReadOnlySpan<double> expected, double tol, string what)
    {
        double rel = RelErr(actual, expected);
        Assert.True(rel <= tol, $"{what}: {Describe(actual, expected)} (tolerance {tol:E1})");
    }
}
