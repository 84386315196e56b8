using System.Diagnostics;
using System.Globalization;
using Palimpsest.Editing;

namespace Palimpsest.Cli;

/// <summary>
/// Where a command's time went: its phases in the order they first ran (wall time, summed over
/// repeats), each with the parts of it the library recorded (<see cref="Inner"/>: an editor's keys,
/// values and solve, an edited folder's write and commit, the key-statistics cache's read or
/// compute), and the wall time since the report was made. Written as a table: a row per phase, its
/// parts indented beneath it followed by "other" (the rest of that phase), then "other" (what no
/// phase covers) and "total"; seconds and percent of the total. The rows that are not indented add
/// up to the total, and the indented ones to the row above them.
/// </summary>
internal sealed class PhaseReport
{
    private readonly long _start = Stopwatch.GetTimestamp();
    private readonly Dictionary<string, PhaseTimes> _inner = new(StringComparer.Ordinal);

    /// <summary>The top-level phases (what <see cref="Time{T}(string, Func{T})"/> adds to).</summary>
    public PhaseTimes Phases { get; } = new();

    public T Time<T>(string phase, Func<T> f) => PhaseTimes.Time(Phases, phase, f);

    public void Time(string phase, Action f) => PhaseTimes.Time(Phases, phase, f);

    /// <summary>Runs f as <paramref name="phase"/> and, within it, as its part <paramref name="part"/>.</summary>
    public void Time(string phase, string part, Action f) => Time(phase, () => PhaseTimes.Time(Inner(phase), part, f));

    /// <summary>Where the parts of <paramref name="phase"/> are recorded (an editor's or a folder's Phases).</summary>
    public PhaseTimes Inner(string phase)
    {
        if (!_inner.TryGetValue(phase, out var p)) _inner[phase] = p = new PhaseTimes();
        return p;
    }

    public void WriteTo(TextWriter w)
    {
        var total = Stopwatch.GetElapsedTime(_start);
        var table = new TextTable(("phase", false), ("seconds", true), ("%", true));
        void Row(string name, TimeSpan t) => table.Add(name, t.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture),
            (total > TimeSpan.Zero ? 100 * t / total : 0).ToString("0.0", CultureInfo.InvariantCulture));
        static TimeSpan Rest(TimeSpan whole, TimeSpan parts) => whole > parts ? whole - parts : TimeSpan.Zero;
        foreach (var (phase, t) in Phases.InOrder)
        {
            Row(phase, t);
            if (!_inner.TryGetValue(phase, out var inner) || inner.InOrder is not { Count: > 0 } parts) continue;
            foreach (var (part, tp) in parts) Row("  " + part, tp);
            Row("  other", Rest(t, inner.Total));
        }
        Row("other", Rest(total, Phases.Total));
        Row("total", total);
        w.WriteLine("time by phase (wall clock; indented rows are parts of the row above them):");
        table.WriteTo(w);
    }
}
