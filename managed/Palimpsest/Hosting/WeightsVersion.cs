using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Hosting;

/// <summary>
/// One immutable state of a served model's weights: its parameters (mostly shared with the
/// versions before it: only the matrices an edit or revert changed are new tensors) and the
/// journal generation it holds. Requests pin a version for their whole life (<see cref="VersionedWeights.Pin"/>).
/// </summary>
public sealed class WeightsVersion
{
    internal WeightsVersion(long number, ParamSet<Tensor> parameters, Holder?[] down)
    {
        Number = number; Params = parameters; Down = down;
    }

    /// <summary>The journal generation these weights are (0: the folder as created).</summary>
    public long Number { get; }
    internal ParamSet<Tensor> Params { get; }
    // per block: the holder of its WDown when an edit made it (null: the base model's tensor)
    internal Holder?[] Down { get; }
    // requests holding this version; Freed once it is retired, unpinned and its tensors let go
    internal int Pins;
    internal int Retired;
    internal const int Freed = int.MinValue / 2;
}

/// <summary>A tensor made for a version and how many live versions hold it (the last one to go disposes it).</summary>
internal sealed class Holder(Tensor tensor)
{
    public Tensor Tensor { get; } = tensor;
    public int Count = 1;
}

/// <summary>A version held by one request; dispose it when the request's last token is out.</summary>
public sealed class VersionPin : IDisposable
{
    private readonly VersionedWeights _owner;
    private int _released;

    internal VersionPin(VersionedWeights owner, WeightsVersion version) { _owner = owner; Version = version; }

    public WeightsVersion Version { get; }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) _owner.Unpin(Version);
    }
}

/// <summary>
/// The sequence of weights versions of a served model, without a lock: publishing a version is one
/// reference swap, and pinning one is a read and an interlocked increment, so a request never waits
/// for the writer (which may be a low-priority thread, preempted anywhere). A retired version is
/// freed when its last pin goes, and a tensor is disposed when no live version holds it any more.
/// The base parameters belong to the base model and are never disposed here. One writer publishes.
/// </summary>
public sealed class VersionedWeights
{
    private WeightsVersion _current;
    private int _live = 1;
    private long _freed;

    public VersionedWeights(ParamSet<Tensor> baseParams, long number)
    {
        _current = new WeightsVersion(number, baseParams, new Holder?[baseParams.Blocks.Length]);
    }

    public WeightsVersion Current => Volatile.Read(ref _current);

    /// <summary>Versions not yet freed (the current one and retired ones still pinned).</summary>
    public int LiveVersions => Volatile.Read(ref _live);

    /// <summary>Versions freed so far.</summary>
    public long FreedVersions => Interlocked.Read(ref _freed);

    /// <summary>Pins the current version for one request.</summary>
    public VersionPin Pin()
    {
        while (true)
        {
            var v = Volatile.Read(ref _current);
            // a freed version's count is far below zero: it stays negative, and we read the new current
            if (Interlocked.Increment(ref v.Pins) > 0) return new VersionPin(this, v);
        }
    }

    /// <summary>
    /// A new current version: the current parameters with block l's WDown replaced by
    /// <paramref name="newDown"/>[l] (tensors the caller made for it; they now belong to the versions).
    /// The previous version is retired and freed once unpinned. Only one thread may publish.
    /// </summary>
    public WeightsVersion Publish(long number, IReadOnlyDictionary<int, Tensor> newDown)
    {
        var old = Current; // the writer's own: it is current, so its holders are alive while we count them
        var p = old.Params.Map((_, t) => t);
        var down = new Holder?[p.Blocks.Length];
        for (int b = 0; b < p.Blocks.Length; b++)
        {
            if (newDown.TryGetValue(b, out var w))
            {
                p.Blocks[b].WDown = w;
                down[b] = new Holder(w);
            }
            else if (old.Down[b] is { } h)
            {
                Interlocked.Increment(ref h.Count);
                down[b] = h;
            }
        }
        var next = new WeightsVersion(number, p, down);
        Interlocked.Increment(ref _live);
        Volatile.Write(ref _current, next);
        Volatile.Write(ref old.Retired, 1);
        TryFree(old);
        return next;
    }

    internal void Unpin(WeightsVersion v)
    {
        if (Interlocked.Decrement(ref v.Pins) == 0 && Volatile.Read(ref v.Retired) == 1) TryFree(v);
    }

    // whoever sees a retired version at zero pins first frees it (the unpinning request or the publisher), once
    private void TryFree(WeightsVersion v)
    {
        if (Interlocked.CompareExchange(ref v.Pins, WeightsVersion.Freed, 0) != 0) return;
        Interlocked.Decrement(ref _live);
        Interlocked.Increment(ref _freed);
        foreach (var h in v.Down)
            if (h is not null && Interlocked.Decrement(ref h.Count) == 0) h.Tensor.Dispose();
    }
}
