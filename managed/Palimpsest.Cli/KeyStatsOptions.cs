using System.CommandLine;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;

namespace Palimpsest.Cli;

/// <summary>The key-statistics corpus and cache options shared by `stats` and `edit`.</summary>
internal static class KeyStatsOptions
{
    public static Option<string?> Corpus(string name) => new(name)
    {
        Description = "corpus for the key statistics: a text file (one sentence per non-blank line, e.g. WikiText) " +
            "or facts:PATH for the sentences of CounterFact records 0..4999 (what the shared fact models were trained on)",
    };

    public static Option<long?> LimitTokens() => new("--limit-tokens") { Description = "use at most this many corpus tokens" };

    public static Option<string?> Cache() => new("--cache")
    {
        Description = "folder of cached statistics (default $XDG_CACHE_HOME/palimpsest/keystats or ~/.cache/palimpsest/keystats)",
    };

    public static string CacheDir(string? given)
    {
        if (given is not null) return given;
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string baseDir = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(baseDir, "palimpsest", "keystats");
    }

    /// <summary>The file a corpus spec reads ("facts:PATH" -> PATH).</summary>
    public static string PathOf(string spec) => Editing.Data.Corpus.SpecPath(spec);

    /// <summary>"facts:PATH" -> CounterFact fact sentences of records 0..4999; otherwise a text file (<see cref="Editing.Data.Corpus.FromSpec"/>).</summary>
    public static Corpus Load(string spec, LoadedModel lm)
    {
        try { return Editing.Data.Corpus.FromSpec(spec, lm.Tok); }
        catch (ArgumentException e) when (e.GetType() == typeof(ArgumentException)) { throw new CliUsageException(e.Message); }
    }

    /// <summary>Statistics of <paramref name="layers"/>, from the cache or computed (a progress bar on stderr when it is a terminal).</summary>
    /// <param name="phases">gets the cache's phases (its key, read, compute, write)</param>
    public static IReadOnlyDictionary<int, KeyStatistics> GetOrCompute(LoadedModel lm, Corpus corpus, int[] layers, string cacheDir, long? limitTokens, CliIo io,
        PhaseTimes? phases = null)
    {
        if (limitTokens is <= 0) throw new CliUsageException($"--limit-tokens: must be a positive integer (got {limitTokens})");
        long tokens = Math.Min(limitTokens ?? long.MaxValue, corpus.TokenCount);
        return CliProgress.Run(io, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"key statistics, {tokens:N0} tokens"),
            progress => KeyStatisticsCache.GetOrCompute(lm.Tf, corpus, layers, cacheDir, limitTokens, progress, warn: m => io.Err.WriteLine($"warning: {m}"), phases: phases));
    }
}
