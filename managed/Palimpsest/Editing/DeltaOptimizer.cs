using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Editing;

/// <summary>One rewriting prompt: its tokens, where δ is added, and (row, token) targets (row t predicts token t+1).</summary>
public sealed record RewritePrompt(int[] Ids, int Lookup, (int Row, int Token)[] Targets);

/// <summary>Settings of the δ optimisation shared by ROME's v* and MEMIT's z*.</summary>
public sealed record DeltaObjective(int Steps, double Lr, double WeightDecay, double ClampNormFactor, double KlFactor, double EarlyStopLoss);

/// <summary>Outcome of a δ optimisation.</summary>
public sealed record DeltaResult(double[] Delta, int Steps, double InitialLoss, double FinalLoss);

/// <summary>
/// The optimisation at the heart of ROME (compute_v) and MEMIT (compute_z): a vector δ added at
/// (layer, site) at each prompt's lookup token, trained with Adam on
///   L = mean_p mean_j −log p(target_j) + kl_factor · KL(P_δ || P₀)("{} is a" at the subject)
///       + weight_decay · ||δ|| / ||v₀||²,
/// clamped to ||δ|| ≤ clamp_norm_factor · ||v₀|| after each step, stopping once L is below the
/// early-stop loss or after Steps − 1 updates (the reference's loop).
/// δ enters at block `layer`, so nothing below it changes from step to step: the residual stream
/// entering that block is computed once per pack of prompts (and for the KL prompt), and every
/// step's forward and backward run from there up (<see cref="ForwardOptions.StartAtLayer"/>).
/// </summary>
public static class DeltaOptimizer
{
    /// <summary>
    /// δ [d] for the vector added at (layer, site) at each prompt's lookup row; klPrompt: ids [T_kl]
    /// and its lookup row (δ is added there too; its logits row is compared with δ = 0's).
    /// site must be at block `layer` itself (MlpOutput, BlockOutput, AttnOutput or ResidualIn).
    /// </summary>
    public static DeltaResult Optimise(Transformer tf, int layer, InterventionSite site, IReadOnlyList<RewritePrompt> prompts,
        (int[] Ids, int Lookup) klPrompt, double v0Norm, DeltaObjective o)
        => Optimise(tf, layer, site, prompts, klPrompt, v0Norm, o, reuseBelow: true);

    /// <summary>
    /// The public Optimise; reuseBelow false is the naive version (every step runs all L blocks), kept as the reference
    /// that the fast one must match bit for bit.
    /// </summary>
    internal static DeltaResult Optimise(Transformer tf, int layer, InterventionSite site, IReadOnlyList<RewritePrompt> prompts,
        (int[] Ids, int Lookup) klPrompt, double v0Norm, DeltaObjective o, bool reuseBelow)
    {
        var c = tf.Model.Config;
        using var deltaT = tf.Model.Backend.Zeros(c.DModel);
        var packs = Pack(prompts, c.MaxPositions, layer, site, deltaT);
        // The residual stream entering block `start` [T, d] of each pack and of the KL prompt: the
        // same values a full forward computes there at every step, as no δ acts below it.
        int start = reuseBelow ? layer : 0;
        var prefixes = new List<ForwardResult>();
        try
        {
            Tensor? Prefix(int[] ids, int[]? segments)
            {
                if (start == 0) return null;
                var r = tf.Forward(ids, new ForwardOptions { Segments = segments, StopAfterLayer = start - 1, ReturnResidual = true });
                prefixes.Add(r);
                return r.Residual;
            }
            var packStarts = packs.Select(p => Prefix(p.Ids, p.Segments)).ToArray();
            var klStart = Prefix(klPrompt.Ids, null);
            return Loop(tf, layer, site, packs, packStarts, start, klPrompt, klStart, v0Norm, o, deltaT);
        }
        finally
        {
            foreach (var r in prefixes) r.Dispose();
        }
    }

    // Adam on δ (deltaT [d] carries it to the forwards); each step's forwards run from block start
    // (packStarts[i], klStart: their residual entering it; null when start = 0).
    private static DeltaResult Loop(Transformer tf, int layer, InterventionSite site, List<PromptPack> packs, Tensor?[] packStarts, int start,
        (int[] Ids, int Lookup) klPrompt, Tensor? klStart, double v0Norm, DeltaObjective o, Tensor deltaT)
    {
        var b = tf.Model.Backend; var c = tf.Model.Config; int d = c.DModel;
        var delta = new double[d];
        var m = new double[d]; var v = new double[d];
        const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8; // torch.optim.Adam defaults
        double[]? klInit = null;
        double loss = double.NaN, initialLoss = double.NaN;
        int step = 0;
        using var grad = b.Zeros(d);
        for (int it = 0; it < o.Steps; it++)
        {
            b.Upload(deltaT, delta);
            b.Zero(grad);
            double nll = RewriteNll(tf, packs, grad, start, packStarts);
            double kl;
            using (var r = tf.Forward(klPrompt.Ids, new ForwardOptions
            {
                LogitsFrom = klPrompt.Lookup, KeepForBackward = true,
                Interventions = [new Intervention(layer, site, klPrompt.Lookup, deltaT)],
                StartAtLayer = start, StartResidual = klStart,
            }))
            {
                using var row = b.Zeros(1, c.Vocab);
                b.CopyRows(r.Logits, 0, row, 0, 1);
                if (klInit is null)
                {
                    using var lp = b.Zeros(1, c.Vocab);
                    b.LogSoftmax(row, lp);
                    klInit = new double[c.Vocab]; b.ToHost(lp, klInit);
                }
                using var refLp = b.FromHost(klInit, 1, c.Vocab);
                using var dRow = b.Zeros(1, c.Vocab);
                kl = o.KlFactor * b.KlDivergence(row, refLp, dRow, o.KlFactor);
                using var dl = b.Zeros(r.Logits.Shape);
                b.CopyRows(dRow, 0, dl, 0, 1);
                tf.Backward(r, dl, [grad]);
            }
            double dn = Math.Sqrt(delta.Sum(x => x * x));
            double decay = o.WeightDecay * dn / (v0Norm * v0Norm);
            loss = nll + kl + decay;
            if (it == 0) initialLoss = loss;
            step = it;
            if (loss < o.EarlyStopLoss || it == o.Steps - 1) break;

            var g = new double[d]; b.ToHost(grad, g);
            if (dn > 0) for (int j = 0; j < d; j++) g[j] += o.WeightDecay * delta[j] / dn / (v0Norm * v0Norm);
            int tStep = it + 1;
            for (int j = 0; j < d; j++)
            {
                m[j] = beta1 * m[j] + (1 - beta1) * g[j];
                v[j] = beta2 * v[j] + (1 - beta2) * g[j] * g[j];
                double mh = m[j] / (1 - Math.Pow(beta1, tStep)), vh = v[j] / (1 - Math.Pow(beta2, tStep));
                delta[j] -= o.Lr * mh / (Math.Sqrt(vh) + eps);
            }
            double maxNorm = o.ClampNormFactor * v0Norm, nn = Math.Sqrt(delta.Sum(x => x * x));
            if (nn > maxNorm) for (int j = 0; j < d; j++) delta[j] *= maxNorm / nn;
        }
        return new DeltaResult(delta, step, initialLoss, loss);
    }

    /// <summary>
    /// mean_p mean_j −log p(target_j) over the rewriting prompts, one forward and backward per pack
    /// (its interventions read δ); grad [d] accumulates its gradient with respect to δ. With
    /// startAt > 0, pack i's forward resumes at that block from starts[i] [T_i, d].
    /// </summary>
    internal static double RewriteNll(Transformer tf, IReadOnlyList<PromptPack> packs, Tensor grad, int startAt = 0, IReadOnlyList<Tensor?>? starts = null)
    {
        var b = tf.Model.Backend;
        double nll = 0;
        for (int i = 0; i < packs.Count; i++)
        {
            var pack = packs[i];
            using var r = tf.Forward(pack.Ids, new ForwardOptions
            {
                Segments = pack.Segments, LogitRows = pack.Rows, KeepForBackward = true, Interventions = pack.Interventions,
                StartAtLayer = startAt, StartResidual = starts?[i],
            });
            using var dl = b.Zeros(r.Logits.Shape);
            // one CrossEntropy per group of prompts with equal target counts (one group when all match)
            foreach (var (targets, scale) in pack.Losses)
                nll += scale * b.CrossEntropy(r.Logits, targets, dl, scale);
            // every intervention is δ: their gradients all accumulate into grad
            tf.Backward(r, dl, Enumerable.Repeat(grad, pack.Interventions.Length).ToArray());
        }
        return nll;
    }

    /// <summary>
    /// Rewriting prompts packed end to end into one forward (<see cref="ForwardOptions.Segments"/>):
    /// Ids [T], one intervention of δ per prompt at its lookup row, Rows = every target row (R, ascending),
    /// and Losses: per group of prompts with the same target count n, targets [R] (−1 outside the
    /// group) and the scale k/P (k of its P prompts in the group), so that Σ scale · CrossEntropy =
    /// this pack's share of mean_p mean_j −log p(target_j).
    /// </summary>
    internal sealed record PromptPack(int[] Ids, int[] Segments, int[] Rows, Intervention[] Interventions, List<(int[] Targets, double Scale)> Losses);

    /// <summary>Packs prompts in order, starting a new forward where the next would pass maxTokens (the context).</summary>
    internal static List<PromptPack> Pack(IReadOnlyList<RewritePrompt> prompts, int maxTokens, int layer, InterventionSite site, Tensor delta)
    {
        var groups = new List<List<RewritePrompt>>();
        int tokens = 0;
        foreach (var p in prompts)
        {
            if (p.Ids.Length > maxTokens) throw new ArgumentException($"rewriting prompt of {p.Ids.Length} tokens is longer than the model's context ({maxTokens})");
            // packed, a row outside the prompt would silently land in its neighbour
            if (p.Lookup < 0 || p.Lookup >= p.Ids.Length || p.Targets.Length == 0 || p.Targets.Any(t => t.Row < 0 || t.Row >= p.Ids.Length))
                throw new ArgumentException($"rewriting prompt of {p.Ids.Length} tokens: lookup {p.Lookup} or target rows [{string.Join(", ", p.Targets.Select(t => t.Row))}] outside it");
            if (groups.Count == 0 || tokens + p.Ids.Length > maxTokens) { groups.Add([]); tokens = 0; }
            groups[^1].Add(p);
            tokens += p.Ids.Length;
        }
        var packs = new List<PromptPack>();
        foreach (var g in groups)
        {
            var ids = new List<int>(); var rows = new List<int>(); var tgt = new List<int>(); var counts = new List<int>();
            var ivs = new List<Intervention>();
            foreach (var p in g)
            {
                int at = ids.Count;
                ids.AddRange(p.Ids);
                ivs.Add(new Intervention(layer, site, at + p.Lookup, delta));
                foreach (var (row, tok) in p.Targets.OrderBy(t => t.Row)) { rows.Add(at + row); tgt.Add(tok); counts.Add(p.Targets.Length); }
            }
            var losses = counts.Distinct().Select(n =>
            {
                var targets = tgt.Select((t, i) => counts[i] == n ? t : -1).ToArray();
                int k = g.Count(p => p.Targets.Length == n);
                return (targets, (double)k / prompts.Count);
            }).ToList();
            packs.Add(new PromptPack(ids.ToArray(), g.Select(p => p.Ids.Length).ToArray(), rows.ToArray(), ivs.ToArray(), losses));
        }
        return packs;
    }
}
