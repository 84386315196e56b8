using Palimpsest.Backends;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Training;

namespace Palimpsest.Editing;

/// <summary>One rewriting prompt: its tokens, where δ is added, and (row, token) targets (row t predicts token t+1).</summary>
public sealed record RewritePrompt(int[] Ids, int Lookup, (int Row, int Token)[] Targets);

/// <summary>Settings of the δ optimisation shared by ROME's v* and MEMIT's z*.</summary>
/// <param name="ReplaySteps">On a backend that records device work (<see cref="IGraphCapture"/>, CUDA graphs),
/// record step 1's forward and backward of each pack and replay them from then on (<see cref="RecordedSteps"/>):
/// the same work without the host queueing ~1,300 ops per step. Off: every step queues its ops.</param>
public sealed record DeltaObjective(int Steps, double Lr, double WeightDecay, double ClampNormFactor, double KlFactor, double EarlyStopLoss, bool ReplaySteps = true);

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
        // the KL prompt rides in the last pack (one forward and backward per step for everything)
        var packs = Pack(prompts, c.MaxPositions, layer, site, deltaT, klPrompt);
        // The residual stream entering block `start` [T, d] of each pack: the same values a full
        // forward computes there at every step, as no δ acts below it.
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
            return Loop(tf, packs, packStarts, start, v0Norm, o);
        }
        finally
        {
            foreach (var r in prefixes) r.Dispose();
        }
    }

    // Adam on δ (the packs' interventions read it from the device); each step's forwards run from
    // block start (packStarts[i]: the residual entering it; null when start = 0).
    private static DeltaResult Loop(Transformer tf, List<PromptPack> packs, Tensor?[] packStarts, int start, double v0Norm, DeltaObjective o)
    {
        var b = tf.Model.Backend; int d = tf.Model.Config.DModel;
        var deltaT = packs[0].Interventions[0].Delta;
        var delta = new double[d];
        var opt = new Adam<double>([delta], new AdamSettings(AdamUpdate.Adam)); // torch.optim.Adam's defaults
        double loss = double.NaN, initialLoss = double.NaN;
        int step = 0;
        using var grad = b.Zeros(d);
        using var kl = new KlTerm(o.KlFactor);
        using var steps = new RecordedSteps(tf, Passes(packs, start, packStarts), grad, o.ReplaySteps);
        for (int it = 0; it < o.Steps; it++)
        {
            b.Upload(deltaT, delta);
            b.Zero(grad);
            // forward and backward (the first step also keeps P₀, δ = 0's, for the KL term)
            var (nll, klLoss) = StepLoss(b, packs, kl, steps.Step);
            double dn = Math.Sqrt(delta.Sum(x => x * x));
            double decay = o.WeightDecay * dn / (v0Norm * v0Norm);
            loss = nll + klLoss + decay;
            if (it == 0) initialLoss = loss;
            step = it;
            if (loss < o.EarlyStopLoss || it == o.Steps - 1) break;

            // the passes gave the NLL's and KL's gradient; the weight-decay term's is added here
            var g = new double[d]; b.ToHost(grad, g);
            if (dn > 0) for (int j = 0; j < d; j++) g[j] += o.WeightDecay * delta[j] / dn / (v0Norm * v0Norm);
            opt.Step([g], o.Lr);
            // project within the L2 ball
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
        => StepLoss(tf, packs, grad, startAt, starts, null).Nll;

    /// <summary>
    /// The KL term's state: kl_factor and the log-probabilities [1, V] of the KL prompt's row at
    /// δ = 0 (taken from the first step, whose δ is 0), kept on the device.
    /// </summary>
    internal sealed class KlTerm(double factor) : IDisposable
    {
        public double Factor { get; } = factor;
        public Tensor? RefLogProbs { get; set; }
        public void Dispose() => RefLogProbs?.Dispose();
    }

    /// <summary>
    /// One step's loss and gradient: (mean_p mean_j −log p(target_j), kl_factor · KL(P_δ || P₀) at the
    /// KL prompt's row when a pack holds it and kl is given, else 0), one forward and backward per
    /// pack; grad [d] accumulates the gradient of their sum with respect to δ.
    /// </summary>
    internal static (double Nll, double Kl) StepLoss(Transformer tf, IReadOnlyList<PromptPack> packs, Tensor grad, int startAt, IReadOnlyList<Tensor?>? starts, KlTerm? kl)
        => StepLoss(tf.Model.Backend, packs, kl, loss => RecordedSteps.RunOnce(tf, Passes(packs, startAt, starts), grad, loss));

    // StepLoss with the passes run by `run` (op by op, or recorded and replayed).
    private static (double Nll, double Kl) StepLoss(IBackend b, IReadOnlyList<PromptPack> packs, KlTerm? kl, Action<PassLoss> run)
    {
        double nll = 0, klLoss = 0;
        run((i, logits, dl) =>
        {
            var (n, k) = PackLoss(b, packs[i], logits, dl, kl);
            nll += n; klLoss += k;
        });
        return (nll, klLoss);
    }

    // Each pack's forward (resumed at block startAt from starts[i] when startAt > 0), kept for the backward.
    private static (int[] Ids, ForwardOptions Options)[] Passes(IReadOnlyList<PromptPack> packs, int startAt, IReadOnlyList<Tensor?>? starts)
        => [.. packs.Select((pack, i) => (pack.Ids, new ForwardOptions
        {
            Segments = pack.Segments, LogitRows = pack.Rows, KeepForBackward = true, Interventions = pack.Interventions,
            StartAtLayer = startAt, StartResidual = starts?[i],
        }))];

    // One pack's share of the loss from its logits [R, V]; dl [R, V] (zero) receives its gradient.
    private static (double Nll, double Kl) PackLoss(IBackend b, PromptPack pack, Tensor logits, Tensor dl, KlTerm? kl)
    {
        double nll = 0, klLoss = 0;
        // one CrossEntropy per group of prompts with equal target counts (one group when all match)
        foreach (var (targets, scale) in pack.Losses)
            nll += scale * b.CrossEntropy(logits, targets, dl, scale);
        if (kl is not null && pack.KlRow >= 0)
        {
            // its row has no cross-entropy target, so its gradient row is the KL's alone
            int V = logits.Cols;
            using var row = b.Zeros(1, V);
            b.CopyRows(logits, pack.KlRow, row, 0, 1);
            if (kl.RefLogProbs is null)
            {
                kl.RefLogProbs = b.Zeros(1, V);
                b.LogSoftmax(row, kl.RefLogProbs);
            }
            using var dRow = b.Zeros(1, V);
            klLoss = kl.Factor * b.KlDivergence(row, kl.RefLogProbs, dRow, kl.Factor);
            b.CopyRows(dRow, 0, dl, pack.KlRow, 1);
        }
        return (nll, klLoss);
    }

    /// <summary>
    /// Rewriting prompts packed end to end into one forward (<see cref="ForwardOptions.Segments"/>):
    /// Ids [T], one intervention of δ per prompt at its lookup row, Rows = every target row (R, ascending),
    /// and Losses: per group of prompts with the same target count n, targets [R] (−1 outside the
    /// group) and the scale k/P (k of its P prompts in the group), so that Σ scale · CrossEntropy =
    /// this pack's share of mean_p mean_j −log p(target_j). KlRow: the index in Rows (and in the
    /// forward's logits) of the KL prompt's lookup row when this pack holds it, else −1; no
    /// cross-entropy target lies on it.
    /// </summary>
    internal sealed record PromptPack(int[] Ids, int[] Segments, int[] Rows, Intervention[] Interventions, List<(int[] Targets, double Scale)> Losses, int KlRow = -1);

    /// <summary>
    /// Packs prompts in order, starting a new forward where the next would pass maxTokens (the
    /// context); the KL prompt (optional: ids and its lookup row, where δ is added too) goes last,
    /// into the last pack when it fits, so that a step runs one forward for everything.
    /// </summary>
    internal static List<PromptPack> Pack(IReadOnlyList<RewritePrompt> prompts, int maxTokens, int layer, InterventionSite site, Tensor delta,
        (int[] Ids, int Lookup)? klPrompt = null)
    {
        var items = prompts.Select(p => (P: p, Kl: false)).ToList();
        if (klPrompt is { } klp)
        {
            if (klp.Ids.Length > maxTokens || klp.Lookup < 0 || klp.Lookup >= klp.Ids.Length)
                throw new ArgumentException($"KL prompt of {klp.Ids.Length} tokens: lookup {klp.Lookup} outside it, or longer than the model's context ({maxTokens})");
            items.Add((new RewritePrompt(klp.Ids, klp.Lookup, []), true));
        }
        var groups = new List<List<(RewritePrompt P, bool Kl)>>();
        int tokens = 0;
        foreach (var item in items)
        {
            var p = item.P;
            if (p.Ids.Length > maxTokens) throw new ArgumentException($"rewriting prompt of {p.Ids.Length} tokens is longer than the model's context ({maxTokens})");
            // packed, a row outside the prompt would silently land in its neighbour
            if (!item.Kl && (p.Lookup < 0 || p.Lookup >= p.Ids.Length || p.Targets.Length == 0 || p.Targets.Any(t => t.Row < 0 || t.Row >= p.Ids.Length)))
                throw new ArgumentException($"rewriting prompt of {p.Ids.Length} tokens: lookup {p.Lookup} or target rows [{string.Join(", ", p.Targets.Select(t => t.Row))}] outside it");
            if (groups.Count == 0 || tokens + p.Ids.Length > maxTokens) { groups.Add([]); tokens = 0; }
            groups[^1].Add(item);
            tokens += p.Ids.Length;
        }
        var packs = new List<PromptPack>();
        foreach (var g in groups)
        {
            var ids = new List<int>(); var rows = new List<int>(); var tgt = new List<int>(); var counts = new List<int>();
            var ivs = new List<Intervention>();
            int klRow = -1;
            foreach (var (p, isKl) in g)
            {
                int at = ids.Count;
                ids.AddRange(p.Ids);
                ivs.Add(new Intervention(layer, site, at + p.Lookup, delta));
                if (isKl) { klRow = rows.Count; rows.Add(at + p.Lookup); tgt.Add(-1); counts.Add(-1); continue; }
                foreach (var (row, tok) in p.Targets.OrderBy(t => t.Row)) { rows.Add(at + row); tgt.Add(tok); counts.Add(p.Targets.Length); }
            }
            var losses = counts.Where(n => n > 0).Distinct().Select(n =>
            {
                var targets = tgt.Select((t, i) => counts[i] == n ? t : -1).ToArray();
                int k = g.Count(x => !x.Kl && x.P.Targets.Length == n);
                return (targets, (double)k / prompts.Count);
            }).ToList();
            packs.Add(new PromptPack(ids.ToArray(), g.Select(x => x.P.Ids.Length).ToArray(), rows.ToArray(), ivs.ToArray(), losses, klRow));
        }
        return packs;
    }
}
