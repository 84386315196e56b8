namespace Palimpsest.Tests.Cli;

/// <summary>A weight that is NaN: predict and generate fail naming the first block whose output is not finite; info --check names the tensor.</summary>
public class CliNonFiniteTests
{
    [Fact]
    public void A_nan_weight_is_named_instead_of_giving_garbage()
    {
        using var m = new TinyGpt2Folder(tweak: t =>
        {
            int i = t.FindIndex(x => x.Name == "transformer.h.1.mlp.c_fc.weight");
            t[i].Values.F32![7] = float.NaN;
        });
        foreach (var args in new[] { new[] { "predict", m.Model, "The mother tongue of" }, ["generate", m.Model, "The mother tongue of", "--max-tokens", "2"] })
        {
            var r = CliRunner.Run(args);
            CliRunner.AssertBadInput(r, "not finite", "from block 1 on", "info MODEL --check");
            Assert.DoesNotContain("The mother tongue of", r.Out); // generate loads and fails before echoing the prompt
        }
        var check = CliRunner.Run("info", m.Model, "--check");
        Assert.True(check.Code == 3, check.ToString());
        Assert.Contains("1 of ", check.Out);
        Assert.Contains("transformer.h.1.mlp.c_fc.weight: 1 NaN, 0 ±∞ of", check.Out);
        using var ok = new TinyGpt2Folder();
        var clean = CliRunner.Run("info", ok.Model, "--check");
        Assert.True(clean.Code == 0, clean.ToString());
        Assert.Contains("is finite", clean.Out);
    }
}
