using System.CommandLine;
using System.Globalization;
using Palimpsest.Journal;

namespace Palimpsest.Cli.Commands;

/// <summary>`palimpsest revert DIR EDIT_ID`: undoes one edit (the weights are recomposed from the originals and the other active edits).</summary>
internal static class RevertCommand
{
    public static Command Create(CliIo io)
    {
        var dir = new Argument<string>("dir") { Description = "edited-model folder" };
        var id = new Argument<string>("edit-id") { Description = "the edit's id (see palimpsest journal DIR)" };
        var cmd = new Command("revert", "undo one edit of an edited-model folder, bit-exactly") { dir, id };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            string text = pr.GetValue(id)!;
            if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long editId) || editId <= 0)
                throw new CliUsageException($"edit id '{text}' is not a positive integer (see palimpsest journal DIR)");
            using var em = EditedModel.Open(pr.GetValue(dir)!, EditCommand.WaitForFolder);
            var entry = em.List().FirstOrDefault(e => e.Id == editId)
                ?? throw new CliUsageException($"{em.JournalPath}: edit {editId} not found (see palimpsest journal {pr.GetValue(dir)})");
            em.Revert(editId);
            io.Out.WriteLine($"reverted edit {editId} ({entry.Method}: {entry.Subject} -> {entry.Target}, layers {string.Join(",", entry.Layers)}); generation {em.Generation}");
            return CliErrors.Ok;
        }));
        return cmd;
    }
}
