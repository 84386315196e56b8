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
        var cmd = new Command("stats", "key statistics E[k kᵀ] of MLP layers over a corpus (cached on disk)") { model, layers, corpus, limit, cache };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            using var lm = LoadedModel.Open(pr.GetValue(model)!);
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
            return CliErrors.Ok;
        }));
        return cmd;
    }

    private static string PathOf(LoadedModel lm, Palimpsest.Editing.Data.Corpus c, int layer, long tokens, string dir) =>
        KeyStatisticsCache.PathFor(dir, layer, KeyStatisticsCache.Key(lm.Tf, c, layer, tokens));
}
