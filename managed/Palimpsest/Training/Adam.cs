using System.Numerics;

namespace Palimpsest.Training;

/// <summary>
/// How a step turns the moments into the update. Each is the exact arithmetic (order of operations
/// and rounding) of a former implementation whose committed results depend on it, so the choice
/// moves no number; mathematically the three are torch.optim.Adam / AdamW. With
/// m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ):
/// </summary>
public enum AdamUpdate
{
    /// <summary>p −= lr·m̂ / (√v̂ + ε), no weight decay (torch.optim.Adam as documented; ROME's v*, MEMIT's z*).</summary>
    Adam,
    /// <summary>p −= lr·(m̂ / (√v̂ + ε) + wd·p) (AdamW with the decay inside the step; LEMoE).</summary>
    AdamW,
    /// <summary>
    /// p −= (lr·wd)·p + (lr / (1 − β₁ᵗ))·m / (√v · (1 / √(1 − β₂ᵗ)) + ε), the scalars in brackets
    /// rounded to T once per step (torch's own arrangement; float32 training).
    /// </summary>
    AdamWFolded,
}

/// <summary>Adam's settings: the update's arrangement and β₁, β₂, ε (torch's defaults).</summary>
public sealed record AdamSettings(AdamUpdate Update, double Beta1 = 0.9, double Beta2 = 0.999, double Eps = 1e-8);

/// <summary>
/// Adam / AdamW (Kingma &amp; Ba; Loshchilov &amp; Hutter) over parameter arrays of T (float or
/// double) updated in place, with moments m, v in T:
///   g ← g·scale; m = β₁m + (1−β₁)g; v = β₂v + (1−β₂)g²; p −= (the settings' update).
/// Weight decay applies to the parameters marked to decay (all by default). The arrays are
/// independent, so they are updated in parallel.
/// </summary>
public sealed class Adam<T> where T : struct, IFloatingPointIeee754<T>
{
    private readonly Memory<T>[] _p, _m, _v;
    private readonly bool[] _decay;
    private int _t;

    /// <summary>parameters: the arrays to update; decays[i]: whether weight decay applies to parameters[i] (null: to all).</summary>
    public Adam(IReadOnlyList<Memory<T>> parameters, AdamSettings settings, IReadOnlyList<bool>? decays = null)
    {
        if (decays is not null && decays.Count != parameters.Count)
            throw new ArgumentException($"Adam: {decays.Count} decay flags for {parameters.Count} parameters");
        Settings = settings;
        _p = [.. parameters];
        _m = [.. parameters.Select(p => new Memory<T>(new T[p.Length]))];
        _v = [.. parameters.Select(p => new Memory<T>(new T[p.Length]))];
        _decay = decays is null ? [.. parameters.Select(_ => true)] : [.. decays];
    }

    public AdamSettings Settings { get; }

    /// <summary>
    /// One update from grads (one per parameter, the same lengths) times scale (clipping; 1: none),
    /// with learning rate lr and weight decay weightDecay (0 for <see cref="AdamUpdate.Adam"/>).
    /// </summary>
    public void Step(IReadOnlyList<ReadOnlyMemory<T>> grads, double lr, double weightDecay, T scale)
    {
        if (grads.Count != _p.Length) throw new ArgumentException($"Adam: {grads.Count} gradients for {_p.Length} parameters");
        for (int i = 0; i < _p.Length; i++)
            if (grads[i].Length != _p[i].Length) throw new ArgumentException($"Adam: gradient {i} has {grads[i].Length} values, its parameter {_p[i].Length}");
        if (Settings.Update == AdamUpdate.Adam && weightDecay != 0) throw new ArgumentException("Adam: AdamUpdate.Adam has no weight decay; use AdamW");
        _t++;
        // bias corrections in float64, as every former implementation computed them
        double bc1 = 1 - Math.Pow(Settings.Beta1, _t), bc2 = 1 - Math.Pow(Settings.Beta2, _t);
        Parallel.For(0, _p.Length, i =>
        {
            var p = _p[i].Span; var m = _m[i].Span; var v = _v[i].Span; var g = grads[i].Span;
            if (Settings.Update == AdamUpdate.AdamWFolded) Folded(p, m, v, g, scale, lr, _decay[i] ? weightDecay : null, bc1, bc2);
            else Plain(p, m, v, g, scale, lr, _decay[i] ? weightDecay : 0, bc1, bc2);
        });
    }

    /// <summary><see cref="Step(IReadOnlyList{ReadOnlyMemory{T}}, double, double, T)"/> unclipped.</summary>
    public void Step(IReadOnlyList<ReadOnlyMemory<T>> grads, double lr, double weightDecay = 0) => Step(grads, lr, weightDecay, T.One);

    // The moments m[k], v[k] from the (scaled) gradient gk, shared by every arrangement.
    private static (T M, T V) Moments(Span<T> m, Span<T> v, int k, T gk, T b1, T b2)
    {
        m[k] = b1 * m[k] + (T.One - b1) * gk;
        v[k] = b2 * v[k] + (T.One - b2) * gk * gk;
        return (m[k], v[k]);
    }

    // AdamUpdate.Adam and .AdamW: m̂ and v̂ per element, in T.
    private void Plain(Span<T> p, Span<T> m, Span<T> v, ReadOnlySpan<T> g, T scale, double lr, double wd, double bc1, double bc2)
    {
        T b1 = T.CreateTruncating(Settings.Beta1), b2 = T.CreateTruncating(Settings.Beta2), eps = T.CreateTruncating(Settings.Eps);
        T tlr = T.CreateTruncating(lr), twd = T.CreateTruncating(wd), c1 = T.CreateTruncating(bc1), c2 = T.CreateTruncating(bc2);
        bool decoupled = Settings.Update == AdamUpdate.AdamW;
        for (int k = 0; k < p.Length; k++)
        {
            var (mk, vk) = Moments(m, v, k, g[k] * scale, b1, b2);
            T mh = mk / c1, vh = vk / c2;
            if (decoupled) p[k] -= tlr * (mh / (T.Sqrt(vh) + eps) + twd * p[k]);
            else p[k] -= tlr * mh / (T.Sqrt(vh) + eps);
        }
    }

    // AdamUpdate.AdamWFolded: the step size, 1/√(1 − β₂ᵗ) and lr·wd rounded to T once; wd null: p does not decay.
    private void Folded(Span<T> p, Span<T> m, Span<T> v, ReadOnlySpan<T> g, T scale, double lr, double? wd, double bc1, double bc2)
    {
        T b1 = T.CreateTruncating(Settings.Beta1), b2 = T.CreateTruncating(Settings.Beta2), eps = T.CreateTruncating(Settings.Eps);
        T stepSize = T.CreateTruncating(lr / bc1), rbc2 = T.CreateTruncating(1 / Math.Sqrt(bc2));
        T twd = wd is { } w ? T.CreateTruncating(lr * w) : T.Zero;
        for (int k = 0; k < p.Length; k++)
        {
            var (mk, vk) = Moments(m, v, k, g[k] * scale, b1, b2);
            p[k] -= twd * p[k] + stepSize * mk / (T.Sqrt(vk) * rbc2 + eps);
        }
    }
}
