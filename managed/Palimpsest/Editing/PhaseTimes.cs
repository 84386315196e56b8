using System.Diagnostics;

namespace Palimpsest.Editing;

/// <summary>
/// Wall time an editor spends in each phase of its edits, summed over calls: "keys" (ROME's k̄ and u,
/// MEMIT's keys per layer), "values" (v*/z* optimisations; UltraEdit's one forward and backward),
/// "solve" (the closed-form update). Given to an editor (<see cref="IEditor.Phases"/>) by whoever
/// measures throughput (bench-edits); null costs nothing.
/// </summary>
public sealed class PhaseTimes
{
    private readonly Dictionary<string, TimeSpan> _times = new();
    private readonly object _lock = new();

    public IReadOnlyDictionary<string, TimeSpan> Times { get { lock (_lock) return new Dictionary<string, TimeSpan>(_times); } }

    public void Add(string phase, TimeSpan elapsed)
    {
        lock (_lock) _times[phase] = (_times.TryGetValue(phase, out var t) ? t : TimeSpan.Zero) + elapsed;
    }

    public TimeSpan this[string phase] { get { lock (_lock) return _times.TryGetValue(phase, out var t) ? t : TimeSpan.Zero; } }

    public void Clear() { lock (_lock) _times.Clear(); }

    /// <summary>Runs f, adding its wall time to phase (nothing is timed when times is null).</summary>
    public static T Time<T>(PhaseTimes? times, string phase, Func<T> f)
    {
        if (times is null) return f();
        long start = Stopwatch.GetTimestamp();
        try { return f(); }
        finally { times.Add(phase, Stopwatch.GetElapsedTime(start)); }
    }
}
