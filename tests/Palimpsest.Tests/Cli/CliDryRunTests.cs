using Palimpsest.Tests.Journal;

namespace Palimpsest.Tests.Cli;

/// <summary>
/// `palimpsest edit --dry-run`: the interference monitor on the committed fact model. Moving the
/// Eiffel Tower to Rome is forecast to move the Louvre's "located in the city of" fact most (the
/// edit then really does turn the Louvre's answer to Rome: docs/editing/editable-models.md); nothing
/// is written; its input errors are named.
/// </summary>
public class CliDryRunTests
{
    private static string Model => Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5");

    private static string[] Args(params string[] extra) =>
    [
        "edit", Model, "--method", "rome", "--hparams", Path.Combine(Model, "rome.json"), "--subject", "the Eiffel Tower",
        "--prompt", "The landmark known as {} is located in the city of", "--target", "Rome",
        "--stats-corpus", Path.Combine(Model, "corpus.txt"), .. extra,
    ];

    [Fact]
    public void Dry_run_names_the_fact_most_at_risk_and_writes_nothing()
    {
        using var cache = new TempDir();
        var before = Directory.GetFiles(Model).Select(f => (f, File.GetLastWriteTimeUtc(f))).ToArray();
        var r = CliRunner.Run(Args("--dry-run", "--bank-limit", "300", "--cache", cache.Path));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("nothing is applied", r.Out);
        var row = r.Out.Split('\n').Single(l => l.TrimStart().StartsWith("1 ", StringComparison.Ordinal));
        // the first of the listed facts at risk is the Louvre under the same template
        Assert.Contains("most at risk", r.Out);
        Assert.Matches(@"Rome\s+0\s+[\d.]+\s+[\d.]+\s+0\.[5-9]\d*\s+[\d.]+\s+the Louvre: The landmark known as \{\} is located in the city of", row);
        Assert.Equal(before, Directory.GetFiles(Model).Select(f => (f, File.GetLastWriteTimeUtc(f))).ToArray());
    }

    [Fact]
    public void Dry_run_errors_name_the_option()
    {
        CliRunner.AssertBadInput(CliRunner.Run(Args("--dry-run", "--out", "/tmp/never")), "--dry-run applies nothing");
        CliRunner.AssertBadInput(CliRunner.Run(Args("--dry-run", "--bank", "/nonexistent/bank.json")), "--bank: file '/nonexistent/bank.json' not found");
        CliRunner.AssertBadInput(CliRunner.Run(Args("--bank-limit", "5", "--out", "/tmp/never")), "--bank and --bank-limit go with --dry-run");
        CliRunner.AssertBadInput(CliRunner.Run(Args()), "missing --out DIR");
    }

    /// <summary>
    /// A norm-anchored MEMIT or AlphaEdit without nas_norm measures its anchor on the command's requests: the dry
    /// run hands them over as --out does (it was refused with "norm_anchor: MEMIT needs requests to measure the
    /// anchor norm on").
    /// </summary>
    [Theory, InlineData("memit"), InlineData("alphaedit")]
    public void Dry_run_of_a_norm_anchored_editor_measures_its_anchor_on_the_requests(string method)
    {
        using var dir = new TempDir();
        string hp = dir.Sub(method + ".json");
        // few steps and templates: the anchor's one optimisation and the edit's take a moment
        File.WriteAllText(hp, """{"layers": [0], "fact_token": "last", "v_loss_layer": 4, "v_num_grad_steps": 4, "context_template_length": 3, "norm_anchor": true, "nas_restart": 1}""");
        var r = CliRunner.Run(["edit", Model, "--method", method, "--hparams", hp, "--subject", "the Eiffel Tower",
            "--prompt", "The landmark known as {} is located in the city of", "--target", "Rome",
            "--stats-corpus", Path.Combine(Model, "corpus.txt"), "--cache", dir.Sub("cache"), "--dry-run", "--bank-limit", "20"]);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains($"with {method} at layers [0]", r.Out);
        Assert.Contains(r.Out.Split('\n'), l => l.TrimStart().StartsWith("1 ", StringComparison.Ordinal) && l.Contains("Rome"));
    }

    [Fact]
    public void Layers_alone_name_an_UltraEdit_layer_whose_defaults_have_none()
    {
        // UltraEdit's defaults name no layer: --layers must reach its settings before they are checked
        // (it was refused with "default hparams: layers: UltraEdit needs at least one layer")
        var r = CliRunner.Run(["edit", Model, "--method", "ultraedit", "--layers", "3", "--subject", "the Eiffel Tower",
            "--prompt", "{} is located in", "--target", "Rome", "--dry-run", "--bank-limit", "20"]);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("with ultraedit at layers [3]", r.Out);
    }
}
