using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Backends.Cuda;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Gpu;

/// <summary>A tensor held twice: on the float64 reference and on the CUDA backend, same values.</summary>
public readonly record struct Both(Tensor R, Tensor G)
{
    /// <summary>The copy that lives on backend b.</summary>
    public Tensor Pick(IBackend b) => b is CudaBackend ? G : R;
}

/// <summary>
/// The reference backend and a CUDA backend side by side, fed identical random inputs (drawn as
/// float32 so both start from the same values); comparisons print max abs / max rel error and the seed.
/// </summary>
public sealed class OpPair : IDisposable
{
    private readonly Random _rng;
    private readonly List<Tensor> _owned = [];

    public OpPair(DType weightStorage = DType.F32)
    {
        Gpu.SkipIfUnavailable();
        Seed = Random.Shared.Next();
        _rng = new Random(Seed);
        G = new CudaBackend(weightStorage);
    }

    public ReferenceBackend R { get; } = new();
    public CudaBackend G { get; }
    public int Seed { get; }

    public float[] Values(long n, double lo = -1, double hi = 1)
    {
        var v = new float[n];
        for (long i = 0; i < n; i++) v[i] = (float)(lo + (hi - lo) * _rng.NextDouble());
        return v;
    }

    public int Int(int maxExclusive) => _rng.Next(maxExclusive);

    private Both Own(Tensor r, Tensor g) { _owned.Add(r); _owned.Add(g); return new Both(r, g); }

    /// <summary>Random activation uniform in [lo, hi).</summary>
    public Both Rand(int[] shape, double lo = -1, double hi = 1)
    {
        long n = 1; foreach (var s in shape) n *= s;
        var v = Values(n, lo, hi);
        return Own(R.FromHost(v, shape), G.FromHost(v, shape));
    }

    public Both Rand(params int[] shape) => Rand(shape, -1, 1);

    /// <summary>
    /// Random weight. With narrow storage the reference gets the values rounded the way the GPU
    /// stores them, so the comparison measures arithmetic, not storage rounding.
    /// </summary>
    public Both Weight(int[] shape, double lo = -1, double hi = 1)
    {
        long n = 1; foreach (var s in shape) n *= s;
        var v = Values(n, lo, hi);
        var g = G.Weight(v, shape);
        var stored = new float[n];
        G.ToHost(g, stored);
        return Own(R.Weight(stored, shape), g);
    }

    public Both Zeros(params int[] shape) => Own(R.Zeros(shape), G.Zeros(shape));

    public double[] HostR(Tensor t) { var h = new double[t.Length]; R.ToHost(t, h); return h; }
    public double[] HostG(Tensor t) { var h = new double[t.Length]; G.ToHost(t, h); return h; }

    /// <summary>Relative L2 error of the GPU result against the reference within tol.</summary>
    public void Check(Both t, double tol, string what) =>
        Num.AssertClose(HostG(t.G), HostR(t.R), tol, $"{what} [{G.Name}, seed {Seed}]");

    public void CheckScalar(double gpu, double reference, double tol, string what) =>
        Assert.True(Math.Abs(gpu - reference) <= tol * Math.Max(Math.Abs(reference), 1e-30),
            $"{what} [{G.Name}, seed {Seed}]: gpu {gpu:R} vs reference {reference:R}, rel {Math.Abs(gpu - reference) / Math.Abs(reference):E2} (tolerance {tol:E1})");

    public void Dispose()
    {
        foreach (var t in _owned) t.Dispose();
        G.Dispose();
        R.Dispose();
    }
}
