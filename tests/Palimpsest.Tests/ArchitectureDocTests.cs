using System.Text.RegularExpressions;

namespace Palimpsest.Tests;

/// <summary>docs/ARCHITECTURE.md stays true: every repository path it names in backticks exists.</summary>
public partial class ArchitectureDocTests
{
    // a backticked token with a slash: a file (with an extension) or a folder (ending in /)
    [GeneratedRegex(@"`([A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)+/?)`")]
    private static partial Regex PathInBackticks();

    [Fact]
    public void Every_path_the_map_names_exists()
    {
        string doc = File.ReadAllText(Path.Combine(Paths.RepoRoot, "docs", "ARCHITECTURE.md"));
        var paths = PathInBackticks().Matches(doc).Select(m => m.Groups[1].Value).Distinct().ToList();
        Assert.True(paths.Count >= 30, $"only {paths.Count} paths found: has the map lost its file lists, or the pattern its way?");
        var missing = paths.Where(p => !(p.EndsWith('/') ? Directory.Exists(Path.Combine(Paths.RepoRoot, p))
            : File.Exists(Path.Combine(Paths.RepoRoot, p)))).ToList();
        Assert.True(missing.Count == 0, $"docs/ARCHITECTURE.md names {missing.Count} path(s) that do not exist: {string.Join(", ", missing)}");
    }
}
