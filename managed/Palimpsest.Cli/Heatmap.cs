using ScottPlot;

namespace Palimpsest.Cli;

/// <summary>
/// A PNG heatmap of a [rows, cols] score table (ScottPlot, rendered headless): rows top to bottom
/// as given (tokens, or token categories), columns = layers, a colour bar, and the title.
/// </summary>
internal static class Heatmap
{
    /// <param name="values">[rows, cols]; NaN cells are drawn blank.</param>
    public static void WritePng(string path, double[,] values, string[] rowLabels, string title, string xLabel, string colorbarLabel)
    {
        int rows = values.GetLength(0), cols = values.GetLength(1);
        var plot = new Plot();
        var hm = plot.Add.Heatmap(values);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(hm).Label = colorbarLabel;
        // ScottPlot draws row 0 at the top, at y = rows − 1.
        plot.Axes.Left.SetTicks(Enumerable.Range(0, rows).Select(i => (double)(rows - 1 - i)).ToArray(), rowLabels);
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, cols).Select(i => (double)i).ToArray(),
            Enumerable.Range(0, cols).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray());
        plot.Axes.Bottom.Label.Text = xLabel;
        plot.Title(title);
        int width = Math.Max(260 + 45 * cols + 8 * rowLabels.Max(l => l.Length), 40 + 9 * title.Length);
        int height = 140 + 26 * rows;
        plot.SavePng(path, width, height);
    }
}
