using System.Text.Json;

namespace Palimpsest.Tests.Cli;

public class CliLifelongTests
{
    [Theory]
    [InlineData("rome", "1")]
    [InlineData("memit", "0,1")]
    public void Lifelong_writes_the_checkpoint_table_and_json(string method, string layers)
    {
        using var m = new TinyGpt2Folder();
        string hp = m.PathIn("few-steps.json"), report = m.PathIn("report");
        File.WriteAllText(hp, """{"v_num_grad_steps": 2}""");
        var r = CliRunner.Run("lifelong", m.Model, "--method", method, "--layers", layers, "--hparams", hp, "--dataset", m.Dataset,
            "--edits", "1", "--held-out", "1", "--stats-corpus", "facts:" + m.Dataset, "--cache", m.PathIn("cache"), "--report", report);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("| edits | ES | GS | LS | ERS | ORS | S |", r.Out);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(report, "lifelong.json")));
        var cps = doc.RootElement.GetProperty("checkpoints");
        Assert.Equal(1, cps.GetArrayLength());
        Assert.Equal(1, cps[0].GetProperty("edits").GetInt32());
        Assert.True(cps[0].GetProperty("delta_norms").GetProperty(layers[..1]).GetDouble() > 0, "the edited layer drifted");
        Assert.True(File.Exists(Path.Combine(report, "lifelong.md")));
    }

    [Fact]
    public void Lifelong_bad_inputs_are_one_error_line()
    {
        using var m = new TinyGpt2Folder();
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--dataset", m.Dataset, "--edits", "5", "--report", m.PathIn("r")), "--edits");
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--dataset", m.PathIn("none.json"), "--edits", "1", "--report", m.PathIn("r")), "none.json");
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--dataset", m.Dataset, "--edits", "1", "--layers", "1", "--report", m.PathIn("r")), "--stats-corpus");
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--dataset", m.Dataset, "--edits", "1", "--batch", "2", "--layers", "1",
            "--stats-corpus", "facts:" + m.Dataset, "--report", m.PathIn("r")), "--batch");
    }
}
