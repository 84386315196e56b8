namespace Palimpsest.Tests.Cli;

/// <summary>`edit --method lemoe` journals an adaptor beside the model; `revert` undoes the newest LEMoE edit first.</summary>
public class CliLemoeEditTests
{
    [Fact]
    public void Lemoe_edit_writes_the_adaptor_and_revert_goes_newest_first()
    {
        using var m = new TinyGpt2Folder();
        string hp = m.PathIn("lemoe.json");
        File.WriteAllText(hp, """{ "layer": 1, "expert_rank": 4, "router_hidden": 6, "key_dim": 5, "lr": 0.02, "steps": 6, "early_stop_loss": 0 }""");
        string dir = m.PathIn("edited");
        var r = CliRunner.Run("edit", m.Model, "--method", "lemoe", "--requests", m.Dataset, "--batch", "1", "--hparams", hp, "--out", dir);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("adaptor generation 2", r.Out);
        Assert.True(File.Exists(Path.Combine(dir, "lemoe.safetensors")));

        var j = CliRunner.Run("journal", dir);
        Assert.True(j.Code == 0, j.ToString());
        Assert.Contains("lemoe", j.Out);

        // the older edit's expert is under the newer one's router: refused with one line, exit 2
        CliRunner.AssertBadInput(CliRunner.Run("revert", dir, "1"), "edit 1", "newest");
        var r2 = CliRunner.Run("revert", dir, "2");
        Assert.True(r2.Code == 0, r2.ToString());
        Assert.True(File.Exists(Path.Combine(dir, "lemoe.safetensors")));
        var r1 = CliRunner.Run("revert", dir, "1");
        Assert.True(r1.Code == 0, r1.ToString());
        Assert.False(File.Exists(Path.Combine(dir, "lemoe.safetensors")));

        // a second adaptor shape on the same folder is refused before any training
        var again = CliRunner.Run("edit", dir, "--method", "lemoe", "--requests", m.Dataset, "--limit", "1", "--hparams", hp, "--out", dir);
        Assert.True(again.Code == 0, again.ToString());
        string hp2 = m.PathIn("lemoe2.json");
        File.WriteAllText(hp2, """{ "layer": 1, "expert_rank": 3, "router_hidden": 6, "key_dim": 5, "steps": 2 }""");
        CliRunner.AssertBadInput(CliRunner.Run("edit", dir, "--method", "lemoe", "--requests", m.Dataset, "--limit", "1", "--hparams", hp2, "--out", dir),
            "lemoe.safetensors", "expert_rank 4");
        CliRunner.AssertBadInput(CliRunner.Run("edit", m.Model, "--method", "lemoe", "--requests", m.Dataset, "--dry-run"), "--dry-run", "lemoe");
    }
}
