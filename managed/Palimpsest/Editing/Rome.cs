using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// ROME (Meng et al. 2022; kmeng01/rome): a rank-one update of one MLP down-projection.
///   k̄ = mean key at the subject's last token over the context templates; u = C⁻¹k̄ / ||C⁻¹k̄||
///   v* = v₀ + δ, δ optimised with Adam so that the target follows the prompt (NLL), the subject's
///        "{} is a" distribution stays put (KL), and ||δ|| stays small (decay, clamp)
///   ΔW [f, d] = u ⊗ (v* − W k_p) / (u · k_p), k_p the key of the bare prompt.
/// One request per call: ROME applies edits one at a time, each from the weights left by the last.
/// </summary>
public sealed class Rome : IEditor
{
    private readonly ITextTokenizer _tok;
    private readonly Func<int, double[]> _secondMoment;
    private readonly Dictionary<int, MathNet.Numerics.LinearAlgebra.Factorization.Cholesky<double>> _chol = new();
    private IReadOnlyList<string>? _templates;

    /// <param name="secondMoment">C_l = E[k kᵀ] [f, f] row-major for a layer (see KeyStatistics).</param>
    public Rome(RomeHparams hparams, ITextTokenizer tokenizer, Func<int, double[]> secondMoment)
    {
        Hparams = hparams; _tok = tokenizer; _secondMoment = secondMoment;
        if (hparams.Layers.Length != 1) throw new ArgumentException("ROME edits exactly one layer (hparams 'layers')");
        if (hparams.FactToken != "subject_last") throw new ArgumentException($"fact_token '{hparams.FactToken}' is not supported (subject_last)");
    }

    public RomeHparams Hparams { get; }
    public string Method => "ROME";

    /// <summary>What the last edit computed, for tests and reports.</summary>
    public RomeTrace? LastTrace { get; private set; }

    public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        if (requests.Count != 1) throw new ArgumentException($"ROME edits one request at a time (got {requests.Count}); apply them in sequence");
        var req = requests[0];
        req.Validate();
        int layer = Hparams.Layers[0];
        var c = tf.Model.Config;
        if (layer < 0 || layer >= c.Layers) throw new ArgumentException($"hparams layer {layer} outside the model's {c.Layers} layers");
        _templates ??= ContextTemplates.Generate(tf, _tok, Hparams.ContextTemplateLengthParams, Hparams.ContextTemplateSeed);

        // k̄ and u = C⁻¹k̄ / ||C⁻¹k̄||  (compute_u)
        var kbar = new double[c.DFf];
        foreach (var t in _templates)
        {
            var key = KeyAt(tf, t.Replace("{}", req.Prompt), req.Subject, layer);
            for (int i = 0; i < kbar.Length; i++) kbar[i] += key[i] / _templates.Count;
        }
        var u = Hparams.Mom2Adjustment ? SolveC(layer, kbar, c.DFf) : (double[])kbar.Clone();
        double un = Math.Sqrt(u.Sum(x => x * x));
        for (int i = 0; i < u.Length; i++) u[i] /= un;

        // v* (compute_v), then the right vector (v* − W k_p) / (u · k_p)
        var (vStar, v0, steps, initialLoss, loss) = OptimiseV(tf, req, layer);
        var kp = KeyAt(tf, req.Prompt, req.Subject, layer);
        var vCur = MlpOutput(tf, layer, kp);
        double denom = 0;
        for (int i = 0; i < kp.Length; i++) denom += kp[i] * u[i];
        var right = new double[c.DModel];
        for (int j = 0; j < right.Length; j++) right[j] = (vStar[j] - vCur[j]) / denom;
        LastTrace = new RomeTrace(kbar, u, kp, v0, vStar, steps, initialLoss, loss, _templates);
        return [new WeightDelta(layer, 1, u, right)];
    }

    /// <summary>Key [f] at the subject's last token of template (with "{}" for the subject).</summary>
    internal double[] KeyAt(Transformer tf, string template, string subject, int layer)
    {
        var (ids, idx) = Encode(template, subject);
        using var r = tf.Forward(ids, new ForwardOptions { CaptureKeysAt = [layer], LogitsFrom = -1 });
        var all = new double[r.MlpKeys[layer].Length];
        tf.Model.Backend.ToHost(r.MlpKeys[layer], all);
        int f = tf.Model.Config.DFf;
        return all.AsSpan(idx * f, f).ToArray();
    }

    /// <summary>The MLP output v [d] = k · WDown + b for a key k [f] (host, float64).</summary>
    internal static double[] MlpOutput(Transformer tf, int layer, double[] key)
    {
        var b = tf.Model.Backend; var bp = tf.Model.Params.Blocks[layer];
        int f = tf.Model.Config.DFf, d = tf.Model.Config.DModel;
        var w = new double[f * d]; b.ToHost(bp.WDown, w);
        var v = new double[d];
        if (bp.BDown is not null) b.ToHost(bp.BDown, v);
        for (int i = 0; i < f; i++)
        {
            double k = key[i];
            for (int j = 0; j < d; j++) v[j] += k * w[i * d + j];
        }
        return v;
    }

    /// <summary>Token ids of template.format(subject) and the subject's last-token index (ROME's conventions).</summary>
    internal (int[] Ids, int SubjectLast) Encode(string template, string subject)
    {
        var ids = _tok.Encode(template.Replace("{}", subject));
        int idx = SubjectTokens.LastIndex(_tok, template, subject);
        if (idx < 0 || idx >= ids.Length)
            throw new ArgumentException($"subject '{subject}' token index {idx} outside the {ids.Length} tokens of \"{template}\"");
        return (ids, idx);
    }

    private double[] SolveC(int layer, double[] k, int f)
    {
        if (!_chol.TryGetValue(layer, out var chol))
        {
            var flat = _secondMoment(layer);
            if (flat.Length != (long)f * f) throw new ArgumentException($"second moment of layer {layer} has {flat.Length} values, expected {f}x{f}");
            var m = Matrix<double>.Build.Dense(f, f, (i, j) => flat[i * f + j]);
            _chol[layer] = chol = m.Cholesky();
        }
        return chol.Solve(Vector<double>.Build.DenseOfArray(k)).ToArray();
    }

    private sealed record Prompt(int[] Ids, int Lookup, int Target);

    private (double[] VStar, double[] V0, int Steps, double InitialLoss, double Loss) OptimiseV(Transformer tf, EditRequest req, int layer)
    {
        var b = tf.Model.Backend; var c = tf.Model.Config; int d = c.DModel;
        string targetText = req.TargetNew.StartsWith(' ') ? req.TargetNew : " " + req.TargetNew;
        var target = _tok.Encode(targetText);
        if (target.Length == 0) throw new ArgumentException($"target '{req.TargetNew}' has no tokens");

        // rewriting prompts: context(prompt) + target[:i], predicting target[i]
        var rewrites = new List<Prompt>();
        foreach (var t in _templates!)
            for (int i = 0; i < target.Length; i++)
            {
                string tmpl = t.Replace("{}", req.Prompt) + _tok.Decode(target.AsSpan(0, i));
                var (ids, idx) = Encode(tmpl, req.Subject);
                rewrites.Add(new Prompt(ids, idx, target[i]));
            }
        var (klIds, klIdx) = Encode("{} is a", req.Subject);

        // v₀: MLP output at the lookup token of the first rewriting prompt (the bare prompt), δ = 0
        var v0 = MlpOutput(tf, layer, KeyAt(tf, req.Prompt, req.Subject, layer));
        double v0Norm = Math.Sqrt(v0.Sum(x => x * x));

        var delta = new double[d];
        var m = new double[d]; var v = new double[d];
        const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8; // torch.optim.Adam defaults
        double[]? klInit = null;
        double loss = double.NaN, initialLoss = double.NaN;
        int step = 0;
        using var deltaT = b.Zeros(d);
        using var grad = b.Zeros(d);
        for (int it = 0; it < Hparams.VNumGradSteps; it++)
        {
            b.Upload(deltaT, delta);
            b.Zero(grad);
            // NLL over the rewriting prompts (each at its own last row), mean over prompts.
            // The reference gathers every target from row 0's distribution (torch.gather with a
            // [1, N] index); that scores multi-token targets against the wrong positions, so we
            // use each prompt's own next-token distribution, as MEMIT's compute_z does.
            double nll = 0;
            foreach (var p in rewrites)
            {
                using var r = tf.Forward(p.Ids, new ForwardOptions
                {
                    LogitsFrom = -1, KeepForBackward = true,
                    Interventions = [new Intervention(layer, InterventionSite.MlpOutput, p.Lookup, deltaT)],
                });
                using var dl = b.Zeros(r.Logits.Shape);
                nll += b.CrossEntropy(r.Logits, [p.Target], dl, 1.0 / rewrites.Count) / rewrites.Count;
                tf.Backward(r, dl, [grad]);
            }
            // KL(P_δ || P₀) of "{} is a" at the subject's last token
            double kl;
            using (var r = tf.Forward(klIds, new ForwardOptions
            {
                LogitsFrom = klIdx, KeepForBackward = true,
                Interventions = [new Intervention(layer, InterventionSite.MlpOutput, klIdx, deltaT)],
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
                kl = Hparams.KlFactor * b.KlDivergence(row, refLp, dRow, Hparams.KlFactor);
                using var dl = b.Zeros(r.Logits.Shape);
                b.CopyRows(dRow, 0, dl, 0, 1);
                tf.Backward(r, dl, [grad]);
            }
            double dn = Math.Sqrt(delta.Sum(x => x * x));
            double decay = Hparams.VWeightDecay * dn / (v0Norm * v0Norm);
            loss = nll + kl + decay;
            if (it == 0) initialLoss = loss;
            step = it;
            if (loss < Hparams.VEarlyStopLoss || it == Hparams.VNumGradSteps - 1) break;

            var g = new double[d]; b.ToHost(grad, g);
            if (dn > 0) for (int j = 0; j < d; j++) g[j] += Hparams.VWeightDecay * delta[j] / dn / (v0Norm * v0Norm);
            int tStep = it + 1;
            for (int j = 0; j < d; j++)
            {
                m[j] = beta1 * m[j] + (1 - beta1) * g[j];
                v[j] = beta2 * v[j] + (1 - beta2) * g[j] * g[j];
                double mh = m[j] / (1 - Math.Pow(beta1, tStep)), vh = v[j] / (1 - Math.Pow(beta2, tStep));
                delta[j] -= Hparams.VLr * mh / (Math.Sqrt(vh) + eps);
            }
            double maxNorm = Hparams.ClampNormFactor * v0Norm, nn = Math.Sqrt(delta.Sum(x => x * x));
            if (nn > maxNorm) for (int j = 0; j < d; j++) delta[j] *= maxNorm / nn;
        }
        var vStar = new double[d];
        for (int j = 0; j < d; j++) vStar[j] = v0[j] + delta[j];
        return (vStar, v0, step, initialLoss, loss);
    }
}

/// <summary>Intermediate results of one ROME edit.</summary>
public sealed record RomeTrace(double[] KBar, double[] U, double[] KPrompt, double[] V0, double[] VStar, int Steps, double InitialLoss, double FinalLoss,
    IReadOnlyList<string> ContextTemplates);
