using System.CommandLine;
using System.Globalization;
using Palimpsest.Journal;

namespace Palimpsest.Cli.Commands;

/// <summary>`palimpsest journal DIR`: every edit recorded in an edited-model folder, oldest first.</summary>
internal static class JournalCommand
{
    public static Command Create(CliIo io)
    {
        var dir = new Argument<string>("dir") { Description = "edited-model folder (made by palimpsest edit --out)" };
        var cmd = new Command("journal", "list the edits of an edited-model folder") { dir };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            // a reading command never waits: with the folder held by an edit being applied, the
            // journal is read as committed (SQLite's own read isolation) instead of refused
            string folder = Path.GetFullPath(pr.GetValue(dir)!);
            IReadOnlyList<JournalEntry> list;
            long generation;
            try
            {
                using var em = EditedModel.Open(folder);
                if (em.Recovery is not null) io.Out.WriteLine($"recovered: {em.Recovery}");
                (list, generation) = (em.List(), em.Generation);
            }
            catch (JournalException e) when (e.Busy)
            {
                (list, generation) = EditedModel.ReadJournal(folder);
                io.Out.WriteLine("(another process is applying an edit to this folder: the journal as committed so far)");
            }
            int active = list.Count(e => !e.Reverted);
            io.Out.WriteLine($"{folder}: {list.Count} edit(s), {active} active, generation {generation}");
            if (list.Count == 0) return CliErrors.Ok;
            var table = new TextTable(("id", true), ("time (UTC)", false), ("method", false), ("subject", false), ("target", false),
                ("layers", false), ("||dW||", true), ("status", false), ("hash", false));
            foreach (var e in list)
                table.Add(e.Id.ToString(CultureInfo.InvariantCulture), Time(e.Time), e.Method, e.Subject, e.Target,
                    string.Join(",", e.Layers), e.DeltaNorm.ToString("0.0000", CultureInfo.InvariantCulture),
                    e.RevertedTime is { } t ? "reverted " + Time(t) : "active", e.ContentHash[..12]);
            table.WriteTo(io.Out);
            foreach (var e in list.Where(e => e.Outcome is not null))
                io.Out.WriteLine($"edit {e.Id}: {e.Outcome}");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    internal static string Time(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);
}
