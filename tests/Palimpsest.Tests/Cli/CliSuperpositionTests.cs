using System.Text.Json;
using Palimpsest.Models;
using Palimpsest.Tests.Journal;

namespace Palimpsest.Tests.Cli;

/// <summary>`palimpsest superposition` on the committed fact model: its files, and its input errors.</summary>
public class CliSuperpositionTests
{
    private static string Model => Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5");

    [Fact]
    public void Superposition_writes_tables_json_matrices_and_plots_per_model_and_across_models()
    {
        using var tmp = new TempDir();
        string report = tmp.Sub("report");
        // the same model twice: a second folder name and the across-models summary (its stats come from the cache)
        var r = CliRunner.Run("superposition", Model, Model, "--facts", Path.Combine(Model, "requests.json"), "--limit", "6", "--known-only",
            "--stats-corpus", Path.Combine(Model, "corpus.txt"), "--limit-tokens", "3000", "--cache", tmp.Sub("cache"), "--report", report);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("facts-d128-l5: 6 facts of requests.json", r.Out);
        foreach (var name in new[] { "facts-d128-l5", "facts-d128-l5-2" })
        {
            string dir = Path.Combine(report, name);
            string[] files = ["superposition.md", "superposition.json", "matrices.safetensors", "kurtosis.png",
                .. Enumerable.Range(0, 5).SelectMany(l => new[] { $"p-layer{l}.png", $"kde-layer{l}.png" })];
            foreach (var f in files) Assert.True(File.Exists(Path.Combine(dir, f)), $"{name}/{f} missing\n{r}");
            Assert.Equal(files.Count(f => f.EndsWith(".png")), Directory.GetFiles(dir, "*.png").Length);
            Assert.Contains("| 4 |", File.ReadAllText(Path.Combine(dir, "superposition.md")));

            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, "superposition.json")));
            var layers = json.RootElement.GetProperty("per_layer");
            Assert.Equal(5, layers.GetArrayLength());
            Assert.Equal(6, json.RootElement.GetProperty("facts").GetArrayLength());
            foreach (var l in layers.EnumerateArray())
            {
                var p = l.GetProperty("p");
                Assert.Equal(30, p.GetProperty("count").GetInt32());
                Assert.Equal(30, p.GetProperty("histogram").GetProperty("counts").GetArrayLength());
                Assert.Equal(30, p.GetProperty("histogram").GetProperty("counts").EnumerateArray().Sum(c => c.GetInt64()));
                Assert.True(p.GetProperty("kde").GetProperty("bandwidth").GetDouble() > 0);
            }
            using var m = SafetensorsFile.Open(Path.Combine(dir, "matrices.safetensors"));
            var p0 = m.ReadF64("p.0");
            Assert.Equal(36, p0.Length);
            for (int i = 0; i < 6; i++) Assert.Equal(1.0, p0[i * 6 + i]);
        }
        Assert.True(File.Exists(Path.Combine(report, "kurtosis-width.png")), r.ToString());
        Assert.Contains("facts-d128-l5-2", File.ReadAllText(Path.Combine(report, "superposition.md")));
    }

    [Fact]
    public void Superposition_bad_inputs_are_one_error_line()
    {
        using var tmp = new TempDir();
        string corpus = Path.Combine(Model, "corpus.txt"), facts = Path.Combine(Model, "requests.json");
        CliRunner.AssertBadInput(CliRunner.Run("superposition", Model, "--facts", tmp.Sub("nope.json"), "--stats-corpus", corpus, "--report", tmp.Sub("r")), "nope.json");
        CliRunner.AssertBadInput(CliRunner.Run("superposition", Model, "--stats-corpus", corpus, "--report", tmp.Sub("r")), "--facts");
        CliRunner.AssertBadInput(CliRunner.Run("superposition", Model, "--facts", facts, "--limit", "1", "--stats-corpus", corpus, "--report", tmp.Sub("r")), "--limit");
        CliRunner.AssertBadInput(CliRunner.Run("superposition", Model, "--facts", facts, "--stats-corpus", tmp.Sub("none.txt"), "--report", tmp.Sub("r")), "none.txt");
        Assert.False(Directory.Exists(tmp.Sub("r")), "nothing is written when the inputs are bad");
    }
}
