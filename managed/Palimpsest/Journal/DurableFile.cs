using System.Globalization;
using Palimpsest.Editing;
using Palimpsest.Models;

namespace Palimpsest.Journal;

/// <summary>
/// One file of an edited-model folder that changes only through the folder's crash-safe protocol
/// (model.safetensors, lemoe.safetensors). The file carries its generation in its safetensors
/// header (<see cref="GenerationKey"/>); the journal holds the committed generation G. A change to G+1:
///   write    the new file as NAME.pending-{G+1} beside NAME (temp + fsync + rename + folder fsync);
///            a crash here leaves the old state plus a stray file
///   commit   the journal transaction that records G+1: the moment the change happens (a failed
///            commit removes the pending file)
///   install  rename the pending file over NAME (or delete NAME when generation G+1 has no file),
///            fsync the folder
/// <see cref="Recover"/> brings the file to the committed generation after a crash anywhere in between.
/// </summary>
internal sealed class DurableFile(string dir, string name, string generationKey, string generationWord)
{
    private string PendingPrefix => name + ".pending-";

    public string Name => name;
    public string Path => System.IO.Path.Combine(dir, name);

    /// <summary>The header metadata key holding the file's generation.</summary>
    public string GenerationKey => generationKey;

    public string PendingPath(long generation) =>
        System.IO.Path.Combine(dir, PendingPrefix + generation.ToString(CultureInfo.InvariantCulture));

    /// <summary>Whether a file name in the folder is one of this file's pending generations.</summary>
    public bool IsPending(string fileName) => fileName.StartsWith(PendingPrefix, StringComparison.Ordinal);

    /// <summary>The generation of the file in place (see <see cref="GenerationOf"/>).</summary>
    public long? Generation => GenerationOf(Path);

    /// <summary>The generation in a file's header, null when the file is absent, unreadable or has none.</summary>
    public long? GenerationOf(string path)
    {
        if (!File.Exists(path)) return null;
        try
        {
            return RawCheckpoint.ReadMetadata(path).TryGetValue(generationKey, out var s)
                && long.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var g) ? g : null;
        }
        catch (ModelFormatException) { return null; }
    }

    /// <summary>
    /// Changes the file to <paramref name="generation"/>: <paramref name="write"/> writes the new file
    /// at the path it is given (null: the new generation has no file), <paramref name="commit"/>
    /// commits that generation in the journal, then the file is put in place. <paramref name="step"/>
    /// is called after each step ("pending-written", "committed", "renamed"). A write that fails on
    /// the file system is one line about the folder naming <paramref name="what"/>, which is unchanged.
    /// <paramref name="phases"/> gets the time of "write NAME", "commit journal" and "install NAME".
    /// </summary>
    public T Change<T>(long generation, Action<string>? write, Func<T> commit, Action<string> step, string what, PhaseTimes? phases = null)
    {
        if (write is not null) PhaseTimes.Time(phases, "write " + name, () => WritePendingOrSay(generation, write, what));
        step("pending-written");
        T result;
        try { result = PhaseTimes.Time(phases, "commit journal", commit); }
        catch
        {
            // the change did not happen: drop its pending file now rather than at the next Open
            try { File.Delete(PendingPath(generation)); } catch (IOException) { /* Open removes it */ }
            throw;
        }
        step("committed");
        PhaseTimes.Time(phases, "install " + name, () =>
        {
            if (write is not null) DurableFs.Replace(PendingPath(generation), Path);
            else Remove();
        });
        step("renamed");
        return result;
    }

    // A full disk or a permission problem while writing leaves the folder as it was, and says so about the folder.
    private void WritePendingOrSay(long generation, Action<string> write, string what)
    {
        try { WritePending(generation, write); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException && e is not FileNotFoundException)
        {
            try { File.Delete(PendingPath(generation)); } catch (IOException) { /* Open removes it */ }
            throw new JournalException($"{dir}: {what} could not be written ({DurableFs.WhyNotWritten(e, dir)}); the folder is unchanged");
        }
    }

    private void WritePending(long generation, Action<string> write)
    {
        write(PendingPath(generation));
        DurableFs.FsyncDirectory(dir);
    }

    private void Remove()
    {
        File.Delete(Path);
        DurableFs.FsyncDirectory(dir);
    }

    /// <summary>
    /// Brings the file to the committed <paramref name="generation"/>: when <paramref name="rebuild"/>
    /// is null that generation has no file and NAME is removed; otherwise NAME must hold it, and if
    /// it does not, that generation's pending file is renamed into place (a crash between commit and
    /// install) or, when that is missing too, <paramref name="rebuild"/> writes it from the journal.
    /// Returns what it did, null when the file was already right.
    /// </summary>
    public string? Recover(long generation, Action<string>? rebuild)
    {
        string label = $"{generationWord} {generation}";
        if (rebuild is null)
        {
            if (!File.Exists(Path)) return null;
            Remove();
            return $"removed {name}: {label} has none";
        }
        long? onDisk = GenerationOf(Path);
        if (onDisk == generation) return null;
        string was = !File.Exists(Path) ? "it was missing" : onDisk is null ? $"it had no {generationWord}" : $"it was at {generationWord} {onDisk}";
        string pending = PendingPath(generation);
        if (File.Exists(pending) && GenerationOf(pending) == generation)
        {
            DurableFs.Replace(pending, Path);
            return $"finished {label} of {name}: renamed its pending file into place ({was})";
        }
        WritePending(generation, rebuild);
        DurableFs.Replace(pending, Path);
        return $"rebuilt {label} of {name} from the journal ({was})";
    }

    /// <summary>The header metadata <paramref name="meta"/> with this file's generation set.</summary>
    public Dictionary<string, string> Stamped(IReadOnlyDictionary<string, string> meta, long generation) =>
        new(meta, StringComparer.Ordinal) { [generationKey] = generation.ToString(CultureInfo.InvariantCulture) };
}
