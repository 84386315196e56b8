using Palimpsest.Tests.Journal;

namespace Palimpsest.Tests.Cli;

/// <summary>The README's demo on the committed fact model, and the demo's input errors.</summary>
public class CliDemoTests
{
    private static string Model => Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5");

    [Fact]
    public void Demo_edits_a_fact_that_then_holds_on_a_paraphrase_keeps_an_unrelated_one_and_reverts_bit_exactly()
    {
        using var cache = new TempDir();
        // what ./build.sh demo runs: ROME's own example, with the committed hparams (fact_token "last")
        var r = CliRunner.Run("demo", Model, "--subject", "the Eiffel Tower", "--target", "Rome", "--cache", cache.Path);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("edit took: yes; paraphrase follows: yes; unrelated fact unchanged: yes; revert restores the answers: yes, the weights bit for bit: yes", r.Out);
    }

    [Fact]
    public void Demo_names_an_unknown_subject_and_a_folder_without_requests()
    {
        CliRunner.AssertBadInput(CliRunner.Run("demo", Model, "--subject", "Nobody Atall"), "--subject 'Nobody Atall'");
        CliRunner.AssertBadInput(CliRunner.Run("demo", CliRunner.Fixture("gpt2")), "requests.json not found");
    }
}
