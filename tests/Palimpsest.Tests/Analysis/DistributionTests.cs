using MathNet.Numerics.Statistics;
using Palimpsest.Analysis;

namespace Palimpsest.Tests.Analysis;

/// <summary>Moments, histogram and KDE against hand-computed values and float64 references.</summary>
public class DistributionTests
{
    private static double[] Normal(int n, int seed)
    {
        var rng = new Random(seed);
        var x = new double[n];
        for (int i = 0; i < n; i++)
        {
            // Box–Muller
            double u1 = 1 - rng.NextDouble(), u2 = rng.NextDouble();
            x[i] = Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
        }
        return x;
    }

    private static double[] Laplace(int n, int seed)
    {
        var rng = new Random(seed);
        var x = new double[n];
        for (int i = 0; i < n; i++)
        {
            // inverse CDF of Laplace(0, 1); u in (−1/2, 1/2)
            double u = rng.NextDouble() - 0.5;
            x[i] = -Math.Sign(u) * Math.Log(1 - 2 * Math.Abs(u));
        }
        return x;
    }

    [Fact]
    public void Excess_kurtosis_of_small_samples_computed_by_hand()
    {
        // [1, 2, 3, 4]: m2 = 1.25, m4 = 2.5625, m4 / m2² − 3 = −1.36 (scipy.stats.kurtosis gives −1.36)
        Assert.Equal(-1.36, Distribution.ExcessKurtosis([1, 2, 3, 4]), 12);
        // [0, 0, 0, 1]: m2 = 0.1875, m4 = 0.08203125, ratio 7/3, excess −2/3
        Assert.Equal(-2.0 / 3, Distribution.ExcessKurtosis([0, 0, 0, 1]), 12);
        // a large offset changes nothing (two-pass central moments)
        Assert.Equal(-1.36, Distribution.ExcessKurtosis([1e8 + 1, 1e8 + 2, 1e8 + 3, 1e8 + 4]), 9);
        Assert.True(double.IsNaN(Distribution.ExcessKurtosis([5, 5, 5])), "a constant sample has no kurtosis (scipy: nan)");
        Assert.Equal(Math.Sqrt(1.25), Distribution.Std([1, 2, 3, 4]), 12);
        Assert.Equal(Math.Sqrt(5.0 / 3), Distribution.Std([1, 2, 3, 4], ddof: 1), 12);
    }

    [Fact]
    public void Kurtosis_of_200k_normal_samples_is_near_0_and_of_laplace_near_3()
    {
        var normal = Normal(200_000, 11);
        double kn = Distribution.ExcessKurtosis(normal);
        Assert.True(Math.Abs(kn) < 0.05, $"normal: excess kurtosis {kn}");
        // MathNet's PopulationKurtosis is the same biased excess estimator, computed independently
        Assert.Equal(normal.PopulationKurtosis(), kn, 9);

        var laplace = Laplace(200_000, 12);
        double kl = Distribution.ExcessKurtosis(laplace);
        Assert.True(Math.Abs(kl - 3) < 0.15, $"Laplace: excess kurtosis {kl}");
        Assert.Equal(laplace.PopulationKurtosis(), kl, 9);
    }

    [Fact]
    public void Histogram_has_30_bins_over_the_range_and_counts_every_value()
    {
        var x = Normal(10_000, 3);
        var h = Distribution.Histogram(x);
        Assert.Equal(30, h.Counts.Length);
        Assert.Equal(31, h.Edges.Length);
        Assert.Equal(x.Min(), h.Edges[0]);
        Assert.Equal(x.Max(), h.Edges[^1], 12);
        Assert.Equal(x.Length, h.Counts.Sum());
        // numpy: the maximum falls in the last (closed) bin
        var two = Distribution.Histogram([0.0, 1.0], bins: 2);
        Assert.Equal([1L, 1L], two.Counts);
    }

    [Fact]
    public void Kde_uses_scotts_bandwidth_and_integrates_to_one()
    {
        var x = Laplace(5_000, 4);
        double sampleStd = Math.Sqrt(x.Select(v => (v - x.Average()) * (v - x.Average())).Sum() / (x.Length - 1));
        double h = Math.Pow(x.Length, -0.2) * sampleStd;
        Assert.Equal(h, Distribution.ScottBandwidth(x), 12);
        var kde = Distribution.GaussianKde(x, points: 400);
        Assert.Equal(h, kde.Bandwidth, 12);
        double integral = 0;
        for (int i = 1; i < kde.Grid.Length; i++)
            integral += 0.5 * (kde.Density[i] + kde.Density[i - 1]) * (kde.Grid[i] - kde.Grid[i - 1]);
        Assert.True(Math.Abs(integral - 1) < 2e-3, $"KDE integrates to {integral}");
        // one grid point against the formula (1/nh) Σ φ((g − xᵢ)/h)
        int g = 200;
        double direct = x.Sum(v => Math.Exp(-0.5 * Math.Pow((kde.Grid[g] - v) / h, 2))) / (x.Length * h * Math.Sqrt(2 * Math.PI));
        Assert.Equal(direct, kde.Density[g], 12);
    }
}
