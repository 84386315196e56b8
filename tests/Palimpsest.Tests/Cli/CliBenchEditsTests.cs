using System.Text.Json;
using System.Text.RegularExpressions;

namespace Palimpsest.Tests.Cli;

/// <summary>`palimpsest bench-edits`: a line per method and batch ending with its rate, JSON and Markdown with the machine and device.</summary>
public class CliBenchEditsTests
{
    [Fact]
    public void Bench_edits_reports_each_method_and_batch_with_its_rate_and_phases()
    {
        using var m = new TinyGpt2Folder();
        string hp = m.PathIn("hp"), outDir = m.PathIn("bench");
        Directory.CreateDirectory(hp);
        File.WriteAllText(Path.Combine(hp, "rome.json"), """{"layers": [1], "v_num_grad_steps": 2, "context_template_length_params": [[3, 1]]}""");
        File.WriteAllText(Path.Combine(hp, "ultraedit.json"), """{"layers": [0, 2], "lr": 0.05}""");
        var r = CliRunner.Run("bench-edits", m.Model, "--methods", "ultraedit,rome", "--batch", "1,2", "--edits", "2", "--dataset", m.Dataset,
            "--hparams-dir", hp, "--stats-corpus", "facts:" + m.Dataset, "--out", outDir);
        Assert.True(r.Code == 0, r.ToString());
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^key statistics  layers \[1\]", lines[0]);
        // ROME edits one at a time: no batch-2 row for it
        Assert.Equal(["ultraedit batch 1", "ultraedit batch 2", "rome batch 1"], lines.Skip(1).Select(l => Regex.Replace(l, @"^(\w+)\s+batch (\d+).*$", "$1 batch $2")));
        Assert.All(lines.Skip(1), l => Assert.Matches(@"\(prepare .*keys .*values .*solve .*apply .*\)  \d+\.\d edits/s$", l));
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "bench-edits.json")));
        var runs = doc.RootElement.GetProperty("runs");
        Assert.Equal(3, runs.GetArrayLength());
        foreach (var run in runs.EnumerateArray())
        {
            double total = run.GetProperty("seconds").GetDouble(), parts = new[] { "keys", "values", "solve", "apply", "other" }.Sum(p => run.GetProperty(p + "_seconds").GetDouble());
            Assert.True(Math.Abs(total - parts) <= 1e-6 + 0.02 * total, $"phases {parts} s do not add up to {total} s");
            Assert.Equal(run.GetProperty("edits").GetInt32() / total, run.GetProperty("edits_per_second").GetDouble(), 6);
        }
        Assert.Contains("cores", doc.RootElement.GetProperty("machine").GetString());
        Assert.Equal("cpu (float32)", doc.RootElement.GetProperty("device").GetString());
        Assert.Contains("| ultraedit | 2 | 2 |", File.ReadAllText(Path.Combine(outDir, "bench-edits.md")));
        // a method without hparams is named with the file it looked for
        CliRunner.AssertBadInput(CliRunner.Run("bench-edits", m.Model, "--methods", "memit", "--dataset", m.Dataset, "--hparams-dir", hp), "memit", "memit.json");
        CliRunner.AssertBadInput(CliRunner.Run("bench-edits", m.Model, "--methods", "mend", "--dataset", m.Dataset, "--hparams-dir", hp), "--methods", "'mend'");
    }
}
