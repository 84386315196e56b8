namespace Palimpsest.Backends;

/// <summary>
/// A point where a backend lets more urgent work go first. A backend that takes a gate calls
/// <see cref="Pass"/> before each of its heavy ops (the SIMD backend: every matrix product and
/// attention), so a host can hold a background computation — a live model's edit — at the next op
/// boundary while its latency-critical work runs, and let it go on when that work is done. A CPU
/// priority cannot do this: two computations on two cores share the caches and the memory
/// bandwidth whatever their priorities.
/// </summary>
public interface IOpGate
{
    /// <summary>Returns when the caller may run its next op (at once when nothing more urgent runs).</summary>
    void Pass();
}

/// <summary>A backend whose heavy ops pass an <see cref="IOpGate"/> first (none: they never wait).</summary>
public interface IGatedBackend
{
    IOpGate? Gate { get; set; }
}
