using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Palimpsest.Tests.Journal;

namespace Palimpsest.Tests.Cli;

/// <summary>
/// `palimpsest edit` ends with where its time went: every phase of the path taken (--out creating
/// or reopening a folder, --dry-run, an adaptor method, WilKE's layer scan), the editor's own
/// phases and the folder's steps indented beneath theirs, each with a non-negative time; the rows
/// add up to the total, the indented ones to the row above them, and the total is no more than the
/// command took. On the committed fact model, with fewer optimisation steps and corpus tokens so
/// that each run takes seconds.
/// </summary>
public class CliEditPhaseTests
{
    private static string Model => Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5");

    private static readonly string[] Fact = ["--subject", "the Eiffel Tower", "--prompt", "The landmark known as {} is located in the city of", "--target", "Rome"];

    // rounding: each printed time is within half a millisecond of the measured one
    private const double Rounding = 0.0005;

    /// <summary>The model folder's hparams for the method with <paramref name="changes"/> laid over them, written into dir.</summary>
    private static string Hparams(TempDir dir, string method, string changes)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Model, method + ".json")))!.AsObject();
        foreach (var (key, value) in JsonNode.Parse(changes)!.AsObject()) json[key] = value?.DeepClone();
        string path = dir.Sub(method + ".json");
        File.WriteAllText(path, json.ToJsonString());
        return path;
    }

    private sealed record Row(string Name, double Seconds, double Percent, List<Row> Parts);

    /// <summary>The run's phase table (parts under their phase), checked for what every such table must satisfy.</summary>
    private static Dictionary<string, Row> Phases(CliRunner.Result r, double elapsedSeconds)
    {
        Assert.True(r.Code == 0, r.ToString());
        var lines = r.Out.Split('\n');
        int title = Array.FindIndex(lines, l => l.StartsWith("time by phase", StringComparison.Ordinal));
        Assert.True(title >= 0, "no time-by-phase table\n" + r);
        Assert.Matches(@"^phase\s+seconds\s+%$", lines[title + 1]);
        var rowPattern = new Regex(@"^(?<indent> *)(?<name>\S.*?)\s+(?<s>-?\d+\.\d{3})\s+(?<p>-?\d+\.\d)$");
        var top = new List<Row>();
        foreach (var line in lines.Skip(title + 3).TakeWhile(l => l.Length > 0))
        {
            var m = rowPattern.Match(line);
            Assert.True(m.Success, $"not a phase row: '{line}'\n{r}");
            var row = new Row(m.Groups["name"].Value, double.Parse(m.Groups["s"].Value, CultureInfo.InvariantCulture),
                double.Parse(m.Groups["p"].Value, CultureInfo.InvariantCulture), []);
            Assert.True(row.Seconds >= 0 && row.Percent >= 0, $"negative time: '{line}'\n{r}");
            if (m.Groups["indent"].Length == 0) top.Add(row);
            else
            {
                Assert.True(m.Groups["indent"].Length == 2 && top.Count > 0, $"a part without its phase: '{line}'\n{r}");
                top[^1].Parts.Add(row);
            }
        }
        Assert.True(top.Count >= 2 && top[^1].Name == "total" && top[^2].Name == "other", "the table ends with other and total\n" + r);
        double total = top[^1].Seconds;
        Assert.True(total > 0 && total <= elapsedSeconds + Rounding, $"total {total} s, but the command took {elapsedSeconds:0.000} s\n{r}");
        // the phases (without other) take no more than the total, and with it they are the total
        var phases = top.SkipLast(1).ToList();
        Assert.True(phases.SkipLast(1).Sum(p => p.Seconds) <= total + Rounding * phases.Count, "the phases add up to more than the total\n" + r);
        Assert.True(Math.Abs(phases.Sum(p => p.Seconds) - total) <= Rounding * (phases.Count + 1), "the rows do not add up to the total\n" + r);
        foreach (var p in phases.Where(p => p.Parts.Count > 0))
        {
            Assert.True(p.Parts[^1].Name == "other", $"{p.Name}'s parts end with other\n{r}");
            Assert.True(p.Parts.SkipLast(1).Sum(q => q.Seconds) <= p.Seconds + Rounding * p.Parts.Count, $"{p.Name}'s parts take longer than it\n{r}");
            Assert.True(Math.Abs(p.Parts.Sum(q => q.Seconds) - p.Seconds) <= Rounding * (p.Parts.Count + 1), $"{p.Name}'s parts do not add up to it\n{r}");
        }
        Assert.Equal(phases.Count, phases.Select(p => p.Name).Distinct().Count());
        return top.ToDictionary(p => p.Name);
    }

    private static (CliRunner.Result Result, double Seconds) Timed(params string[] args)
    {
        var clock = Stopwatch.StartNew();
        var r = CliRunner.Run(args);
        return (r, clock.Elapsed.TotalSeconds);
    }

    private static void AssertPhases(Dictionary<string, Row> phases, string[] expected, CliRunner.Result r)
    {
        foreach (var name in expected) Assert.True(phases.ContainsKey(name), $"no phase '{name}'\n{r}");
    }

    private static void AssertParts(Dictionary<string, Row> phases, string phase, string[] expected, CliRunner.Result r)
    {
        var names = phases[phase].Parts.Select(p => p.Name).ToList();
        foreach (var name in expected) Assert.True(names.Contains(name), $"no part '{name}' of '{phase}'\n{r}");
    }

    private static readonly string[] FolderSteps = ["open journal", "save originals", "recompose weights", "write model.safetensors", "commit journal", "install model.safetensors", "update loaded model"];

    [Fact]
    public void Rome_edit_into_a_new_folder_then_ultraedit_in_place_report_every_phase()
    {
        using var dir = new TempDir();
        string rome = Hparams(dir, "rome", """{"v_num_grad_steps": 8}""");
        string outDir = dir.Sub("edited");
        var (r, seconds) = Timed(["edit", Model, "--method", "rome", "--hparams", rome, .. Fact, "--limit-tokens", "4000", "--cache", dir.Sub("cache"), "--out", outDir]);
        var phases = Phases(r, seconds);
        AssertPhases(phases, ["check requests", "create folder", "load model", "key statistics", "prepare editor", "reopen from journal", "check answers", "edit", "apply to folder"], r);
        AssertParts(phases, "key statistics", ["read corpus", "cache key", "compute", "cache write"], r);
        AssertParts(phases, "edit", ["keys", "values", "solve", "update editor memory"], r);
        AssertParts(phases, "apply to folder", FolderSteps, r);
        Assert.False(phases.ContainsKey("open folder"), r.ToString());

        // the same folder edited again in place, by a method without key statistics: its statistics are not a phase
        string ultra = Hparams(dir, "ultraedit", "{}");
        (r, seconds) = Timed(["edit", outDir, "--method", "ultraedit", "--hparams", ultra, "--requests", Path.Combine(Model, "requests.json"), "--limit", "2", "--batch", "1", "--out", outDir]);
        phases = Phases(r, seconds);
        AssertPhases(phases, ["open folder", "load model", "reopen from journal", "check answers", "edit", "apply to folder"], r);
        AssertParts(phases, "edit", ["values", "solve"], r);
        AssertParts(phases, "apply to folder", FolderSteps, r);
        Assert.False(phases.ContainsKey("create folder") || phases.ContainsKey("key statistics"), r.ToString());
    }

    [Fact]
    public void Dry_run_reports_the_edit_and_the_forecast_and_a_second_run_reads_the_cached_statistics()
    {
        using var dir = new TempDir();
        string rome = Hparams(dir, "rome", """{"v_num_grad_steps": 8}""");
        string[] args = ["edit", Model, "--method", "rome", "--hparams", rome, .. Fact, "--dry-run", "--bank-limit", "40", "--limit-tokens", "4000", "--cache", dir.Sub("cache")];
        var (r, seconds) = Timed(args);
        var phases = Phases(r, seconds);
        AssertPhases(phases, ["load model", "key statistics", "prepare editor", "edit", "bank keys", "forecast"], r);
        AssertParts(phases, "edit", ["keys", "values", "solve"], r);
        AssertParts(phases, "key statistics", ["compute"], r);
        Assert.False(phases.ContainsKey("apply to folder") || phases.ContainsKey("create folder"), r.ToString());

        (r, seconds) = Timed(args);
        phases = Phases(r, seconds);
        AssertParts(phases, "key statistics", ["cache key", "cache read"], r);
        Assert.DoesNotContain(phases["key statistics"].Parts, p => p.Name == "compute");

        (r, seconds) = Timed(["edit", Model, "--method", "ultraedit", "--hparams", Hparams(dir, "ultraedit", "{}"), .. Fact, "--dry-run", "--bank-limit", "40"]);
        phases = Phases(r, seconds);
        AssertParts(phases, "edit", ["values", "solve"], r);
        AssertPhases(phases, ["bank keys", "forecast"], r);
    }

    [Fact]
    public void Wilke_and_lemoe_edits_report_their_own_phases()
    {
        using var dir = new TempDir();
        string wilke = Hparams(dir, "wilke", """{"scanning_ceiling": 2, "v_num_grad_steps": 4}""");
        var (r, seconds) = Timed(["edit", Model, "--method", "wilke", "--hparams", wilke, .. Fact, "--limit-tokens", "4000", "--cache", dir.Sub("cache"), "--out", dir.Sub("wilke")]);
        var phases = Phases(r, seconds);
        AssertParts(phases, "edit", ["scan", "choose layer"], r);
        AssertParts(phases, "apply to folder", FolderSteps, r);

        string lemoe = Hparams(dir, "lemoe", """{"steps": 4}""");
        (r, seconds) = Timed(["edit", Model, "--method", "lemoe", "--hparams", lemoe, .. Fact, "--out", dir.Sub("lemoe")]);
        phases = Phases(r, seconds);
        AssertPhases(phases, ["create folder", "load model", "check answers", "edit", "apply to folder"], r);
        AssertParts(phases, "edit", ["keys", "train"], r);
        AssertParts(phases, "apply to folder", ["write lemoe.safetensors", "commit journal", "install lemoe.safetensors"], r);
    }
}
