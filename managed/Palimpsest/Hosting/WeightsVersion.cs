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
    internal WeightsVersion(long number, ParamSet<Tensor> parameters)
    {
        Number = number; Params = parameters;
    }

    /// <summary>The journal generation these weights are (0: the folder as created).</summary>
    public long Number { get; }
    internal ParamSet<Tensor> Params { get; }

    // guarded by VersionedWeights._gate
    internal int Pins;
    internal bool Retired;
    internal bool Freed;
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
/// The sequence of weights versions of a served model. Publishing a version is one reference swap
/// under a lock held for a few instructions (what traffic feels of an edit); a retired version is
/// freed when its last pin goes, and a tensor is disposed when no live version holds it any more.
/// The base parameters belong to the base model and are never disposed here.
/// </summary>
public sealed class VersionedWeights
{
    private readonly object _gate = new();
    private readonly HashSet<Tensor> _base;
    // how many live (not freed) versions hold each tensor that is not a base tensor
    private readonly Dictionary<Tensor, int> _holders = new(ReferenceEqualityComparer.Instance);
    private WeightsVersion _current;
    private int _live = 1;
    private long _freed;

    public VersionedWeights(ParamSet<Tensor> baseParams, long number)
    {
        _base = new HashSet<Tensor>(baseParams.Named().Select(n => n.Value), ReferenceEqualityComparer.Instance);
        _current = new WeightsVersion(number, baseParams);
    }

    public WeightsVersion Current { get { lock (_gate) return _current; } }

    /// <summary>Versions not yet freed (the current one and retired ones still pinned).</summary>
    public int LiveVersions { get { lock (_gate) return _live; } }

    /// <summary>Versions freed so far.</summary>
    public long FreedVersions { get { lock (_gate) return _freed; } }

    /// <summary>Pins the current version for one request.</summary>
    public VersionPin Pin()
    {
        lock (_gate)
        {
            _current.Pins++;
            return new VersionPin(this, _current);
        }
    }

    /// <summary>
    /// A new current version: the current parameters with block l's WDown replaced by
    /// <paramref name="newDown"/>[l] (tensors the caller made for it; they now belong to the versions).
    /// The previous version is retired and freed once unpinned.
    /// </summary>
    public WeightsVersion Publish(long number, IReadOnlyDictionary<int, Tensor> newDown)
    {
        var old = Current;
        var p = old.Params.Map((name, t) => t);
        for (int b = 0; b < p.Blocks.Length; b++)
            if (newDown.TryGetValue(b, out var w)) p.Blocks[b].WDown = w;
        var next = new WeightsVersion(number, p);
        List<Tensor>? dispose;
        lock (_gate)
        {
            foreach (var t in Owned(next)) _holders[t] = _holders.GetValueOrDefault(t) + 1;
            var previous = _current;
            _current = next;
            _live++;
            previous.Retired = true;
            dispose = previous.Pins == 0 ? Free(previous) : null;
        }
        DisposeAll(dispose);
        return next;
    }

    internal void Unpin(WeightsVersion v)
    {
        List<Tensor>? dispose = null;
        lock (_gate)
        {
            v.Pins--;
            if (v.Pins == 0 && v.Retired) dispose = Free(v);
        }
        DisposeAll(dispose);
    }

    // under _gate: the version's tensors lose a holder; those nobody holds any more are returned to dispose outside the lock
    private List<Tensor> Free(WeightsVersion v)
    {
        v.Freed = true;
        _live--;
        _freed++;
        var gone = new List<Tensor>();
        foreach (var t in Owned(v))
        {
            int n = _holders[t] - 1;
            if (n == 0) { _holders.Remove(t); gone.Add(t); }
            else _holders[t] = n;
        }
        return gone;
    }

    private IEnumerable<Tensor> Owned(WeightsVersion v) => v.Params.Blocks.Select(b => b.WDown).Where(t => !_base.Contains(t));

    private static void DisposeAll(List<Tensor>? tensors)
    {
        if (tensors is null) return;
        foreach (var t in tensors) t.Dispose();
    }
}
