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
/// </summary>
public static class DeltaOptimizer
{
    public static DeltaResult Optimise(Transformer tf, int layer, InterventionSite site, IReadOnlyList<RewritePrompt> prompts,
        (int[] Ids, int Lookup) klPrompt, double v0Norm, DeltaObjective o)
    {
        var b = tf.Model.Backend; var c = tf.Model.Config; int d = c.DModel;
        var delta = new double[d];
        var m = new double[d]; var v = new double[d];
        const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8; // torch.optim.Adam defaults
        double[]? klInit = null;
        double loss = double.NaN, initialLoss = double.NaN;
        int step = 0;
        using var deltaT = b.Zeros(d);
        using var grad = b.Zeros(d);
        for (int it = 0; it < o.Steps; it++)
        {
            b.Upload(deltaT, delta);
            b.Zero(grad);
            double nll = 0;
            foreach (var p in prompts)
            {
                int from = p.Targets.Min(t => t.Row);
                using var r = tf.Forward(p.Ids, new ForwardOptions
                {
                    LogitsFrom = from, KeepForBackward = true,
                    Interventions = [new Intervention(layer, site, p.Lookup, deltaT)],
                });
                var targets = Enumerable.Repeat(-1, p.Ids.Length - from).ToArray();
                foreach (var (row, tok) in p.Targets) targets[row - from] = tok;
                using var dl = b.Zeros(r.Logits.Shape);
                // CrossEntropy averages over this prompt's targets; prompts are averaged here
                nll += b.CrossEntropy(r.Logits, targets, dl, 1.0 / prompts.Count) / prompts.Count;
                tf.Backward(r, dl, [grad]);
            }
            double kl;
            using (var r = tf.Forward(klPrompt.Ids, new ForwardOptions
            {
                LogitsFrom = klPrompt.Lookup, KeepForBackward = true,
                Interventions = [new Intervention(layer, site, klPrompt.Lookup, deltaT)],
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
}
