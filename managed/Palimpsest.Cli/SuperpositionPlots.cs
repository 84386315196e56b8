using Palimpsest.Analysis;
using ScottPlot;

namespace Palimpsest.Cli;

/// <summary>
/// The PNGs of `palimpsest superposition` (ScottPlot, headless): a P-matrix heatmap and a KDE of
/// whitened against raw cosines per layer, kurtosis per layer, and kurtosis against width across
/// models.
/// </summary>
internal static class SuperpositionPlots
{
    /// <summary>Heatmap of the top-left [shown, shown] block of P [n, n]; colours clipped at ±r so the unit diagonal does not wash out the rest.</summary>
    public static void PHeatmap(string path, double[] p, int n, int shown, string title)
    {
        shown = Math.Min(shown, n);
        var values = new double[shown, shown];
        double r = 0;
        for (int i = 0; i < shown; i++)
            for (int j = 0; j < shown; j++)
            {
                values[i, j] = p[i * n + j];
                if (i != j) r = Math.Max(r, Math.Abs(p[i * n + j]));
            }
        r = Math.Max(r == 0 ? 1 : Math.Min(r, 1), 1e-6); // off-diagonal scale, at most the diagonal's 1
        var plot = new Plot();
        var hm = plot.Add.Heatmap(values);
        hm.Colormap = new ScottPlot.Colormaps.Balance();
        hm.ManualRange = new ScottPlot.Range(-r, r);
        plot.Add.ColorBar(hm).Label = "p(kᵢ, kⱼ)";
        // ScottPlot draws row i at y = shown − 1 − i: label the rows by i so fact 0 reads at the top.
        int step = Math.Max(1, shown / 8);
        var ticks = Enumerable.Range(0, shown).Where(i => i % step == 0).ToArray();
        var labels = ticks.Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        plot.Axes.Left.SetTicks(ticks.Select(i => (double)(shown - 1 - i)).ToArray(), labels);
        plot.Axes.Bottom.SetTicks(ticks.Select(i => (double)i).ToArray(), labels);
        plot.Axes.Bottom.Label.Text = "fact j";
        plot.Axes.Left.Label.Text = "fact i";
        plot.Title(title);
        plot.SavePng(path, 620, 560);
    }

    /// <summary>Line plot of two or more KDEs (grid, density) with their legends.</summary>
    public static void Kdes(string path, IReadOnlyList<(string Label, KernelDensity Kde)> kdes, string title, string xLabel)
    {
        var plot = new Plot();
        foreach (var (label, kde) in kdes)
        {
            if (kde.Grid.Length == 0) continue;
            var line = plot.Add.ScatterLine(kde.Grid, kde.Density);
            line.LegendText = label;
            line.LineWidth = 2;
        }
        plot.Axes.Bottom.Label.Text = xLabel;
        plot.Axes.Left.Label.Text = "density";
        plot.Title(title);
        plot.ShowLegend();
        plot.SavePng(path, 640, 420);
    }

    /// <summary>Points (x, y) without lines (NaN points are left out).</summary>
    public static void Scatter(string path, double[] x, double[] y, string title, string xLabel, string yLabel)
    {
        var plot = new Plot();
        var keep = Enumerable.Range(0, x.Length).Where(i => double.IsFinite(x[i]) && double.IsFinite(y[i])).ToArray();
        if (keep.Length > 0)
        {
            var sc = plot.Add.ScatterPoints(keep.Select(i => x[i]).ToArray(), keep.Select(i => y[i]).ToArray());
            sc.MarkerSize = 3;
        }
        plot.Axes.Bottom.Label.Text = xLabel;
        plot.Axes.Left.Label.Text = yLabel;
        plot.Title(title);
        plot.SavePng(path, 720, 480);
    }

    /// <summary>Series of (x, y) points joined by lines, one per label; NaN points are left out.</summary>
    public static void Lines(string path, IReadOnlyList<(string Label, double[] X, double[] Y)> series, string title, string xLabel, string yLabel)
    {
        var plot = new Plot();
        foreach (var (label, x, y) in series)
        {
            var keep = Enumerable.Range(0, x.Length).Where(i => double.IsFinite(x[i]) && double.IsFinite(y[i])).ToArray();
            if (keep.Length == 0) continue;
            var sc = plot.Add.Scatter(keep.Select(i => x[i]).ToArray(), keep.Select(i => y[i]).ToArray());
            sc.LegendText = label;
        }
        plot.Axes.Bottom.Label.Text = xLabel;
        plot.Axes.Left.Label.Text = yLabel;
        plot.Title(title);
        plot.ShowLegend();
        plot.SavePng(path, 640, 420);
    }
}
