using System.Text.RegularExpressions;

namespace Palimpsest.Tests;

/// <summary>build.ps1 (PowerShell) offers what build.sh offers.</summary>
public class BuildScriptTests
{
    [Fact]
    public void Build_ps1_and_build_sh_offer_the_same_verbs_and_usage()
    {
        string sh = File.ReadAllText(Path.Combine(Paths.RepoRoot, "build.sh")), ps = File.ReadAllText(Path.Combine(Paths.RepoRoot, "build.ps1"));
        var shVerbs = Regex.Matches(sh, @"^  ([a-z-]+)\)$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).Order().ToArray();
        var psVerbs = Regex.Matches(ps, @"^    '([a-z-]+)' \{$", RegexOptions.Multiline).Select(m => m.Groups[1].Value).Order().ToArray();
        Assert.Equal(["bench", "build", "demo", "ptx", "sample", "test"], shVerbs);
        Assert.Equal(shVerbs, psVerbs);
        // each names every verb in its usage lines
        foreach (var text in new[] { sh, ps })
            Assert.Contains("[" + string.Join("|", ["build", "test", "demo", "sample", "bench", "ptx"]) + "]", text);
    }
}
