using System.Diagnostics;
using Palimpsest.Backends;

namespace Palimpsest.Hosting;

/// <summary>
/// Holds a live model's edit computation while any completion decodes: the streams say when they
/// start and end (<see cref="Enter"/>, <see cref="Exit"/>, twice per completion, not per token),
/// and the writer's backend passes the gate before each heavy op, so an edit runs in the gaps
/// between completions and a request shares the machine with at most the one op in flight when it
/// began. A priority (nice 19) only orders the cores' time; the two computations still share the
/// caches and the memory bandwidth, which measured ~16 % on every token while an edit computed.
/// So that a steady load cannot starve an edit, each writer job (<see cref="Arm"/>) is held for at
/// most a budget in all; past it the edit runs beside the traffic as it would without the gate.
/// </summary>
internal sealed class DecodingGate(TimeSpan budget) : IOpGate, IDisposable
{
    private readonly object _lock = new();
    private readonly ManualResetEventSlim _quiet = new(initialState: true); // set while no completion decodes
    private int _decoding;
    // the writer's own (only the writer thread calls Arm and Pass)
    private readonly long _budget = Ticks(budget);
    private long _held;

    /// <summary>A completion starts decoding.</summary>
    public void Enter()
    {
        lock (_lock) if (++_decoding == 1) _quiet.Reset();
    }

    /// <summary>A completion has stopped decoding.</summary>
    public void Exit()
    {
        lock (_lock) if (--_decoding == 0) _quiet.Set();
    }

    /// <summary>Starts a writer job: it may be held for the whole budget again.</summary>
    public void Arm() => _held = 0;

    /// <summary>How long the current writer job has been held so far.</summary>
    public TimeSpan Held => Stopwatch.GetElapsedTime(0, _held);

    public void Pass()
    {
        while (Volatile.Read(ref _decoding) > 0)
        {
            long left = _budget - _held;
            if (left <= 0) return;
            long t0 = Stopwatch.GetTimestamp();
            _quiet.Wait(Stopwatch.GetElapsedTime(0, left));
            _held += Stopwatch.GetTimestamp() - t0;
        }
    }

    private static long Ticks(TimeSpan t) => (long)(t.TotalSeconds * Stopwatch.Frequency);

    public void Dispose() => _quiet.Dispose();
}
