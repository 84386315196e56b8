using System.Diagnostics;

namespace Palimpsest.Editing;

/// <summary>
/// Wall time spent in each phase of some work, summed over calls, the phases kept in the order they
/// first ran. An editor's (<see cref="IEditor.Phases"/>): "keys" (ROME's k̄ and u, MEMIT's keys per
/// layer, LEMoE's keys at its layer), "values" (v*/z* optimisations; UltraEdit's one forward and
/// backward), "solve" (the closed-form update), "train" (LEMoE's AdamW steps), "scan" and
/// "choose layer" (WilKE's ROME edits at every scanned layer, run at once, and its choice among them).
/// An edited folder's (<see cref="Journal.EditedModel.Phases"/>) and the key-statistics cache's name
/// theirs likewise. Given by whoever measures them (bench-edits, edit); null costs nothing. The
/// library only records: printing is the caller's.
/// </summary>
public sealed class PhaseTimes
{
    private readonly Dictionary<string, TimeSpan> _times = new();
    private readonly List<string> _order = [];
    private readonly object _lock = new();

    public IReadOnlyDictionary<string, TimeSpan> Times { get { lock (_lock) return new Dictionary<string, TimeSpan>(_times); } }

    /// <summary>Each phase and its time, in the order the phases first ran.</summary>
    public IReadOnlyList<KeyValuePair<string, TimeSpan>> InOrder
    {
        get { lock (_lock) return _order.Select(p => KeyValuePair.Create(p, _times[p])).ToList(); }
    }

    /// <summary>The sum over all phases.</summary>
    public TimeSpan Total { get { lock (_lock) return _times.Values.Aggregate(TimeSpan.Zero, (a, b) => a + b); } }

    public void Add(string phase, TimeSpan elapsed)
    {
        lock (_lock)
        {
            if (_times.TryGetValue(phase, out var t)) _times[phase] = t + elapsed;
            else { _times[phase] = elapsed; _order.Add(phase); }
        }
    }

    public TimeSpan this[string phase] { get { lock (_lock) return _times.TryGetValue(phase, out var t) ? t : TimeSpan.Zero; } }

    public void Clear() { lock (_lock) { _times.Clear(); _order.Clear(); } }

    /// <summary>Runs f, adding its wall time to phase (nothing is timed when times is null).</summary>
    public static T Time<T>(PhaseTimes? times, string phase, Func<T> f)
    {
        if (times is null) return f();
        long start = Stopwatch.GetTimestamp();
        try { return f(); }
        finally { times.Add(phase, Stopwatch.GetElapsedTime(start)); }
    }

    /// <summary>Runs f, adding its wall time to phase (nothing is timed when times is null).</summary>
    public static void Time(PhaseTimes? times, string phase, Action f) =>
        Time(times, phase, () => { f(); return 0; });
}
