using System.CommandLine;
using System.Globalization;
using Palimpsest.Editing;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest stats MODEL --layers 2,3 --corpus FILE|facts:PATH [--limit-tokens N] [--cache DIR]`:
/// the MLP key second moments C_l = E[k kᵀ] that ROME/MEMIT need, computed once and cached.
/// </summary>
internal static class StatsCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var layers = new Option<string>("--layers") { Description = "comma-separated layers, e.g. --layers 2,3", Required = true };
        var corpus = KeyStatsOptions.Corpus("--corpus");
        corpus.Required = true;
        var limit = KeyStatsOptions.LimitTokens();
        var cache = KeyStatsOptions.Cache();
        var spectrum = new Option<string?>("--spectrum")
        {
            Description = "also print C's eigenvalues per layer: the count below each comma-separated threshold and the share of the corpus keys' energy (trace) there — AlphaEdit's null space, e.g. --spectrum 0.02,0.1",
        };
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var cmd = new Command("stats", "key statistics E[k kᵀ] of MLP layers over a corpus (cached on disk)") { model, layers, corpus, limit, cache, spectrum, device, dtype };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var dev = DeviceChoice.Read(pr, device, dtype);
            dev.Check();
            using var lm = LoadedModel.Open(pr.GetValue(model)!, dev);
            int[] ls = EditingErrors.ParseLayers(pr.GetValue(layers)!, lm.Config.Layers, "--layers");
            var c = KeyStatsOptions.Load(pr.GetValue(corpus)!, lm);
            string dir = KeyStatsOptions.CacheDir(pr.GetValue(cache));
            long? maxTokens = pr.GetValue(limit);
            long tokens = Math.Min(maxTokens ?? long.MaxValue, c.TokenCount);
            var cachedBefore = ls.Distinct().ToDictionary(l => l, l => File.Exists(PathOf(lm, c, l, tokens, dir)));
            var stats = KeyStatsOptions.GetOrCompute(lm, c, ls, dir, maxTokens, io);
            io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"corpus {c.Name}: {c.Sentences.Count:N0} sentences, {c.TokenCount:N0} tokens; cache {dir}"));
            var table = new TextTable(("layer", true), ("tokens", true), ("trace", true), ("source", false), ("file", false));
            foreach (int l in ls.Distinct())
            {
                var s = stats[l];
                double tr = 0;
                for (int i = 0; i < s.Dim; i++) tr += s.Matrix[(long)i * s.Dim + i];
                table.Add(l.ToString(CultureInfo.InvariantCulture), s.TokenCount.ToString(CultureInfo.InvariantCulture),
                    tr.ToString("G6", CultureInfo.InvariantCulture), cachedBefore[l] ? "cache" : "computed", PathOf(lm, c, l, tokens, dir));
            }
            table.WriteTo(io.Out);
            if (pr.GetValue(spectrum) is { } spec) WriteSpectrum(io, stats, ls.Distinct().ToArray(), ParseThresholds(spec));
            return CliErrors.Ok;
        }));
        return cmd;
    }

    private static double[] ParseThresholds(string text) => text.Split(',', StringSplitOptions.TrimEntries).Select(t =>
        double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var x) && x > 0 ? x
            : throw new CliUsageException($"--spectrum: '{t}' is not a positive number (expected e.g. --spectrum 0.02,0.1)")).ToArray();

    // AlphaEdit keeps the eigenvectors of C below a threshold: how many there are, and what share of
    // the corpus keys' energy E[||k||²] = trace(C) lies in them (what an edit there would disturb).
    private static void WriteSpectrum(CliIo io, IReadOnlyDictionary<int, KeyStatistics> stats, int[] layers, double[] thresholds)
    {
        var cols = new List<(string, bool)> { ("layer", true), ("min eig", true), ("median eig", true), ("max eig", true) };
        foreach (var t in thresholds) cols.Add(($"#eig<{t.ToString(CultureInfo.InvariantCulture)}", true));
        foreach (var t in thresholds) cols.Add(($"energy<{t.ToString(CultureInfo.InvariantCulture)}", true));
        var table = new TextTable([.. cols]);
        foreach (int l in layers)
        {
            var s = stats[l];
            var m = MathNet.Numerics.LinearAlgebra.Matrix<double>.Build.Dense(s.Dim, s.Dim, (i, j) => s.Matrix[(long)i * s.Dim + j]);
            var eig = m.Evd(MathNet.Numerics.LinearAlgebra.Symmetricity.Symmetric).EigenValues.Select(z => z.Real).OrderBy(x => x).ToArray();
            double trace = eig.Sum();
            var row = new List<string> { l.ToString(CultureInfo.InvariantCulture), G(eig[0]), G(eig[eig.Length / 2]), G(eig[^1]) };
            foreach (var t in thresholds) row.Add(eig.Count(x => x < t).ToString(CultureInfo.InvariantCulture));
            foreach (var t in thresholds) row.Add(G(eig.Where(x => x < t).Sum() / trace));
            table.Add([.. row]);
        }
        io.Out.WriteLine("eigenvalues of C (ascending; energy = share of trace(C) in the eigenvectors below the threshold):");
        table.WriteTo(io.Out);
    }

    private static string G(double x) => x.ToString("G4", CultureInfo.InvariantCulture);

    private static string PathOf(LoadedModel lm, Palimpsest.Editing.Data.Corpus c, int layer, long tokens, string dir) =>
        KeyStatisticsCache.PathFor(dir, layer, KeyStatisticsCache.Key(lm.Tf, c, layer, tokens));
}
