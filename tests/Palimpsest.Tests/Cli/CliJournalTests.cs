namespace Palimpsest.Tests.Cli;

public class CliJournalTests
{
    [Fact]
    public void Journal_of_a_fresh_edited_folder_is_empty_and_revert_of_an_unknown_id_fails()
    {
        using var m = new TinyGpt2Folder();
        string dir = m.PathIn("edited");
        using (Palimpsest.Journal.EditedModel.Create(m.Model, dir)) { }
        var j = CliRunner.Run("journal", dir);
        Assert.True(j.Code == 0, j.ToString());
        Assert.Contains("0 edit(s), 0 active, generation 0", j.Out);
        CliRunner.AssertBadInput(CliRunner.Run("revert", dir, "4"), "edit 4 not found");
        CliRunner.AssertBadInput(CliRunner.Run("revert", dir, "x1"), "'x1'");
    }
}
