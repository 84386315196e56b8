namespace Palimpsest.Analysis;

/// <summary>Counts of values in equal-width bins: Edges [bins + 1], Counts [bins].</summary>
public sealed record Histogram(double[] Edges, long[] Counts);

/// <summary>A Gaussian kernel density estimate evaluated on a grid: Grid [points], Density [points].</summary>
public sealed record KernelDensity(double Bandwidth, double[] Grid, double[] Density);

/// <summary>
/// One sample [Count] summarised: mean, standard deviation (population, ddof 0, as numpy's std),
/// excess kurtosis (Fisher, biased: scipy.stats.kurtosis's defaults), range, a histogram and a KDE.
/// </summary>
public sealed record DistributionSummary(int Count, double Mean, double Std, double ExcessKurtosis, double Min, double Max,
    Histogram Histogram, KernelDensity Density);

/// <summary>
/// Moments, histograms and kernel density estimates of a sample of doubles, computed the way
/// numpy/scipy do so that numbers can be compared with the papers' notebooks. Central moments are
/// taken in two passes (mean first) because the one-pass Σx⁴ form loses every digit of the
/// kurtosis of values with a large mean.
/// </summary>
public static class Distribution
{
    public const int DefaultBins = 30, DefaultKdePoints = 200;

    /// <summary>Arithmetic mean of x [n]; NaN for an empty sample.</summary>
    public static double Mean(ReadOnlySpan<double> x)
    {
        if (x.Length == 0) return double.NaN;
        double s = 0;
        foreach (var v in x) s += v;
        return s / x.Length;
    }

    /// <summary>Standard deviation of x [n] with divisor n − ddof (numpy's std; ddof 0 by default).</summary>
    public static double Std(ReadOnlySpan<double> x, int ddof = 0)
    {
        if (x.Length - ddof <= 0) return double.NaN;
        return Math.Sqrt(CentralMoments(x, Mean(x)).M2 * x.Length / (x.Length - ddof));
    }

    /// <summary>
    /// Excess kurtosis of x [n], Fisher's definition with the biased estimator m₄ / m₂² − 3 (scipy's
    /// kurtosis(x) with fisher=True, bias=True): 0 for a normal, 3 for a Laplace. NaN when all
    /// values are equal (m₂ = 0), as scipy.
    /// </summary>
    public static double ExcessKurtosis(ReadOnlySpan<double> x)
    {
        if (x.Length == 0) return double.NaN;
        var (m2, m4) = CentralMoments(x, Mean(x));
        return m2 == 0 ? double.NaN : m4 / (m2 * m2) - 3;
    }

    /// <summary>
    /// Equal-width histogram of x [n] over [min, max] (numpy's histogram: the last bin includes
    /// max). A constant sample gets numpy's range [v − 0.5, v + 0.5].
    /// </summary>
    public static Histogram Histogram(ReadOnlySpan<double> x, int bins = DefaultBins)
    {
        if (bins < 1) throw new ArgumentOutOfRangeException(nameof(bins), "bins must be >= 1");
        if (x.Length == 0) throw new ArgumentException("histogram of an empty sample");
        double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
        foreach (var v in x) { lo = Math.Min(lo, v); hi = Math.Max(hi, v); }
        if (lo == hi) { lo -= 0.5; hi += 0.5; }
        var edges = new double[bins + 1];
        for (int i = 0; i <= bins; i++) edges[i] = lo + (hi - lo) * i / bins;
        var counts = new long[bins];
        foreach (var v in x)
        {
            int b = (int)((v - lo) / (hi - lo) * bins);
            counts[Math.Clamp(b, 0, bins - 1)]++;
        }
        return new Histogram(edges, counts);
    }

    /// <summary>
    /// Scott's rule for a 1-D Gaussian KDE: h = n^(−1/5) · σ, σ the sample standard deviation with
    /// ddof 1 (scipy's gaussian_kde: its kernel covariance is np.cov(x) · factor², factor = n^(−1/5)).
    /// </summary>
    public static double ScottBandwidth(ReadOnlySpan<double> x)
    {
        if (x.Length < 2) throw new ArgumentException("Scott's bandwidth needs at least 2 values");
        return Math.Pow(x.Length, -0.2) * Std(x, ddof: 1);
    }

    /// <summary>
    /// Gaussian KDE of x [n] on <paramref name="points"/> equally spaced grid points spanning
    /// [min − 3h, max + 3h] (so almost all the mass is on the grid), density (1/n) Σ φ((g − xᵢ)/h)/h.
    /// Bandwidth h: Scott's unless given. Cost n · points kernel evaluations.
    /// </summary>
    public static KernelDensity GaussianKde(ReadOnlySpan<double> x, int points = DefaultKdePoints, double? bandwidth = null)
    {
        if (points < 2) throw new ArgumentOutOfRangeException(nameof(points), "a KDE grid needs at least 2 points");
        double h = bandwidth ?? ScottBandwidth(x);
        if (!(h > 0)) throw new ArgumentException($"KDE bandwidth must be positive (got {h}); the sample may be constant");
        double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
        foreach (var v in x) { lo = Math.Min(lo, v); hi = Math.Max(hi, v); }
        lo -= 3 * h; hi += 3 * h;
        var grid = new double[points];
        var density = new double[points];
        double norm = 1.0 / (x.Length * h * Math.Sqrt(2 * Math.PI));
        for (int g = 0; g < points; g++)
        {
            grid[g] = lo + (hi - lo) * g / (points - 1);
            double s = 0;
            foreach (var v in x)
            {
                double z = (grid[g] - v) / h;
                // beyond 8 h a kernel contributes < 1e-14 of its peak: skipping it changes nothing visible
                if (z is > -8 and < 8) s += Math.Exp(-0.5 * z * z);
            }
            density[g] = s * norm;
        }
        return new KernelDensity(h, grid, density);
    }

    /// <summary>Mean, std, excess kurtosis, range, histogram and KDE of x [n] (n ≥ 2).</summary>
    public static DistributionSummary Summarize(ReadOnlySpan<double> x, int bins = DefaultBins, int kdePoints = DefaultKdePoints)
    {
        if (x.Length < 2) throw new ArgumentException($"a distribution summary needs at least 2 values (got {x.Length})");
        double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
        foreach (var v in x) { lo = Math.Min(lo, v); hi = Math.Max(hi, v); }
        double h = ScottBandwidth(x);
        // a constant sample has no density to estimate; keep the summary, with an empty KDE
        var kde = h > 0 ? GaussianKde(x, kdePoints, h) : new KernelDensity(0, [], []);
        return new DistributionSummary(x.Length, Mean(x), Std(x), ExcessKurtosis(x), lo, hi, Histogram(x, bins), kde);
    }

    // (Σ (x − mean)² / n, Σ (x − mean)⁴ / n)
    private static (double M2, double M4) CentralMoments(ReadOnlySpan<double> x, double mean)
    {
        double s2 = 0, s4 = 0;
        foreach (var v in x)
        {
            double d = v - mean, d2 = d * d;
            s2 += d2;
            s4 += d2 * d2;
        }
        return (s2 / x.Length, s4 / x.Length);
    }
}
