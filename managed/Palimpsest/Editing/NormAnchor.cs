using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// Norm-Anchor Scaling (Liu et al. 2026, "Norm Anchors Make Model Edits Last"; SasyaTitech/NAS
/// NAS/compute_z.py, util/vstar_stats.py). A stream of locate-and-edit updates collapses through a
/// feedback loop: larger solved values grow the edited weights, which make the next values larger.
/// NAS cuts it by giving every solved MLP-output value v* = v₀ + δ the norm of an anchor measured
/// once on the unedited model:
///   anchor = mean of ‖v₀ + δ‖ over nas_restart sampled requests (δ optimised on the bare prompt,
///            the largest 5 % dropped)
///   ‖v*‖ > 2 · anchor: the request is skipped (v* = v₀, no change); else v* ← v* · anchor / ‖v*‖
/// MEMIT and AlphaEdit then aim the block output at (z₀ − v₀) + v*, ROME its rank-one update at v*.
/// </summary>
public static class NormAnchor
{
    /// <summary>The NAS statistics' share of the largest norms that are kept (util/vstar_stats.py _NAS_OUTLIER_UPPER_QUANTILE).</summary>
    public const double UpperQuantile = 0.95;

    /// <summary>v* rescaled to the anchor, or v₀ when ‖v*‖ is more than twice it (skipped).</summary>
    public static double[] Rescale(double[] vStar, double[] v0, double anchor, out bool skipped)
    {
        double norm = Math.Sqrt(vStar.Sum(x => x * x));
        skipped = anchor > 0 && norm > 2 * anchor;
        if (skipped) return (double[])v0.Clone();
        if (anchor <= 0 || norm + 1e-10 <= 1e-10) return (double[])vStar.Clone();
        double s = anchor / (norm + 1e-10);
        return vStar.Select(x => x * s).ToArray();
    }

    /// <summary>The mean of the values with the largest ⌊(1 − q)·n⌋ dropped.</summary>
    public static double UpperTrimmedMean(IReadOnlyList<double> values, double q = UpperQuantile)
    {
        if (values.Count == 0) throw new ArgumentException("norm anchor: no values to average");
        if (values.Any(v => !double.IsFinite(v))) throw new ArgumentException("norm anchor: a v* norm is not finite");
        var sorted = values.Order().ToArray();
        int drop = (int)Math.Floor((1.0 - q) * sorted.Length);
        return sorted.Take(sorted.Length - drop).Average();
    }

    /// <summary>
    /// The anchor at `layer`: ‖v₀ + δ‖ of `samples` requests drawn from the pool (seeded), each δ
    /// optimised on its bare prompt (no context prefixes, as the reference's statistics) with the
    /// KL prompt "{} is a", added at `site` of that layer (ROME: the MLP output; MEMIT: the block
    /// output); v₀ the MLP output at the lookup token.
    /// </summary>
    public static double Measure(Transformer tf, ITextTokenizer tok, FactProbes probes, IReadOnlyList<EditRequest> pool, int samples, int layer,
        InterventionSite site, DeltaObjective objective, int seed = 0)
    {
        if (pool.Count == 0) throw new ArgumentException("norm_anchor: no requests to measure the anchor norm on (give a pool of requests, or nas_norm)");
        if (samples < 1) throw new ArgumentException($"nas_restart must be at least 1 (got {samples})");
        var rng = new Random(seed);
        var drawn = pool.Count <= samples ? pool : pool.Select(r => (R: r, K: rng.Next())).OrderBy(x => x.K).Take(samples).Select(x => x.R).ToList();
        var norms = new List<double>();
        foreach (var req in drawn)
        {
            var target = tok.Encode(req.TargetNew.StartsWith(' ') ? req.TargetNew : " " + req.TargetNew);
            if (target.Length == 0) continue;
            var (ids, idx) = probes.EncodeRewrite(req.Prompt, req.Subject, tok.Decode(target.AsSpan(0, target.Length - 1)));
            var targets = Enumerable.Range(0, target.Length).Select(j => (ids.Length - target.Length + j, target[j])).ToArray();
            var v0 = FactProbes.MlpOutput(tf, layer, probes.KeyAt(tf, req.Prompt, req.Subject, layer));
            var init = site == InterventionSite.MlpOutput ? v0 : probes.BlockOutputAt(tf, req.Prompt, req.Subject, layer);
            double initNorm = Math.Sqrt(init.Sum(x => x * x));
            var r = DeltaOptimizer.Optimise(tf, layer, site, [new RewritePrompt(ids, idx, targets)], probes.Encode("{} is a", req.Subject), initNorm, objective);
            norms.Add(Math.Sqrt(v0.Zip(r.Delta, (a, b) => (a + b) * (a + b)).Sum()));
        }
        return UpperTrimmedMean(norms);
    }
}

/// <summary>An editor that can rescale its solved values to a norm anchor (ROME, MEMIT, AlphaEdit with "norm_anchor": true).</summary>
public interface IAnchoredEditor
{
    /// <summary>Whether the hparams turn Norm-Anchor Scaling on.</summary>
    bool NormAnchored { get; }

    /// <summary>The requests the anchor norm is measured on, before the first edit (unless the hparams give nas_norm).</summary>
    IReadOnlyList<EditRequest>? AnchorPool { get; set; }

    /// <summary>The anchor norms in use ("12.345 at layer 0"), once measured; null before.</summary>
    string? AnchorDescription { get; }
}
