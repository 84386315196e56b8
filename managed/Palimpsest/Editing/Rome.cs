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
public sealed class Rome : IPreparedEditor, ILayerEditor, IAnchoredEditor
{
    private readonly ITextTokenizer _tok;
    private readonly Func<int, double[]> _secondMoment;
    private readonly Dictionary<int, MathNet.Numerics.LinearAlgebra.Factorization.Cholesky<double>> _chol = new();
    private IReadOnlyList<string>? _templates;
    private readonly FactProbes _probes;

    /// <param name="secondMoment">C_l = E[k kᵀ] [f, f] row-major for a layer (see KeyStatistics).</param>
    public Rome(RomeHparams hparams, ITextTokenizer tokenizer, Func<int, double[]> secondMoment)
    {
        Hparams = hparams; _tok = tokenizer; _secondMoment = secondMoment; _probes = new FactProbes(tokenizer, hparams.FactToken);
        if (hparams.Layers.Length != 1) throw new ArgumentException("ROME edits exactly one layer (hparams 'layers')");
    }

    public RomeHparams Hparams { get; }
    public bool NormAnchored => Hparams.NormAnchor;

    public PhaseTimes? Phases { get; set; }
    public string Method => "rome";

    public string LastOutcome => LastTrace is { } t ? $"{Editors.Loss(t.InitialLoss)} -> {Editors.Loss(t.FinalLoss)}" : "-";

    /// <summary>What the last edit computed, for tests and reports.</summary>
    public RomeTrace? LastTrace { get; private set; }

    public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        if (requests.Count != 1) throw new ArgumentException($"ROME edits one request at a time (got {requests.Count}); apply them in sequence");
        return [ComputeDeltaAt(tf, requests[0], Hparams.Layers[0])];
    }

    /// <summary>The edit of one request at <paramref name="layer"/> instead of the hparams' (<see cref="ILayerEditor"/>).</summary>
    public IReadOnlyList<WeightDelta> ComputeDeltasAt(Transformer tf, IReadOnlyList<EditRequest> requests, int layer)
    {
        if (requests.Count != 1) throw new ArgumentException($"ROME edits one request at a time (got {requests.Count}); apply them in sequence");
        return [ComputeDeltaAt(tf, requests[0], layer)];
    }

    /// <summary>
    /// The rank-one ROME delta of one request at `layer` (the hparams' layer is ignored; WilKE scans
    /// every layer with one editor, whose context templates and Cholesky factors are shared).
    /// </summary>
    internal WeightDelta ComputeDeltaAt(Transformer tf, EditRequest req, int layer)
    {
        req.Validate();
        Prepare(tf, layer);
        var delta = Compute(tf, req, layer, out var trace);
        LastTrace = trace;
        return delta;
    }

    /// <summary>The context templates and C's factor at the hparams' layer (see <see cref="IPreparedEditor"/>).</summary>
    public void Prepare(Transformer tf) => Prepare(tf, Hparams.Layers[0]);

    /// <summary>
    /// Generates the context templates (once per editor) and factors C at `layer` (once per layer).
    /// After it, <see cref="Compute"/> at that layer only reads the editor's state, so WilKE can run
    /// several layers at once, each on its own Transformer.
    /// </summary>
    internal void Prepare(Transformer tf, int layer)
    {
        var c = tf.Model.Config;
        if (layer < 0 || layer >= c.Layers) throw new ArgumentException($"hparams layer {layer} outside the model's {c.Layers} layers");
        Editors.CheckLossLayer(Hparams.VLossLayer, c.Layers);
        _templates ??= ContextTemplates.Generate(tf, _tok, Hparams.ContextTemplateLengthParams, Hparams.ContextTemplateSeed);
        if (Hparams.Mom2Adjustment) Factor(layer, c.DFf);
        if (Hparams.NormAnchor && !_anchor.ContainsKey(layer))
            _anchor[layer] = Hparams.NasNorm > 0 ? Hparams.NasNorm
                : Editing.NormAnchor.Measure(tf, _tok, _probes, AnchorPool ?? throw new ArgumentException("norm_anchor: ROME needs requests to measure the anchor norm on (AnchorPool, or set nas_norm)"),
                    Hparams.NasRestart ?? 1000, layer, InterventionSite.MlpOutput, Objective);
    }

    /// <summary>Norm-Anchor Scaling: the requests the anchor norm is measured on (sampled; see <see cref="Editing.NormAnchor"/>).</summary>
    public IReadOnlyList<EditRequest>? AnchorPool { get; set; }

    /// <summary>Norm-Anchor Scaling: the anchor norm of a prepared layer, or null.</summary>
    public double? AnchorNorm(int layer) => _anchor.TryGetValue(layer, out var a) ? a : null;

    /// <summary>Norm-Anchor Scaling: requests left unchanged because their ‖v*‖ passed twice the anchor.</summary>
    public int AnchorSkipped => _anchorSkipped;

    public string? AnchorDescription => _anchor.Count == 0 ? null
        : string.Join(", ", _anchor.OrderBy(kv => kv.Key).Select(kv => $"{kv.Value.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture)} at layer {kv.Key}")) + $"; {_anchorSkipped} edit(s) skipped";

    private readonly Dictionary<int, double> _anchor = new();
    private int _anchorSkipped;

    private DeltaObjective Objective => new(Hparams.VNumGradSteps, Hparams.VLr, Hparams.VWeightDecay, Hparams.ClampNormFactor, Hparams.KlFactor, Hparams.VEarlyStopLoss);

    /// <summary>
    /// The delta of one validated request (its callers validate it once, before <see cref="Prepare"/>)
    /// at a prepared layer, and what it computed; reads the editor's state only.
    /// </summary>
    internal WeightDelta Compute(Transformer tf, EditRequest req, int layer, out RomeTrace trace)
    {
        var c = tf.Model.Config;
        if (_templates is null || (Hparams.Mom2Adjustment && !_chol.ContainsKey(layer)) || (Hparams.NormAnchor && !_anchor.ContainsKey(layer)))
            throw new InvalidOperationException($"ROME: layer {layer} was not prepared");

        // k̄ and u = C⁻¹k̄ / ||C⁻¹k̄||  (compute_u)
        var (kbar, u) = PhaseTimes.Time(Phases, "keys", () =>
        {
            var kbar = new double[c.DFf];
            foreach (var key in _probes.KeysAt(tf, _templates.Select(t => t.Replace("{}", req.Prompt)).ToArray(), req.Subject, layer))
                for (int i = 0; i < kbar.Length; i++) kbar[i] += key[i] / _templates.Count;
            var u = Hparams.Mom2Adjustment ? _chol[layer].Solve(Vector<double>.Build.DenseOfArray(kbar)).ToArray() : (double[])kbar.Clone();
            double un = Math.Sqrt(u.Sum(x => x * x));
            for (int i = 0; i < u.Length; i++) u[i] /= un;
            return (kbar, u);
        });

        // v* (compute_v), then the right vector (v* − W k_p) / (u · k_p)
        var (vStar, v0, steps, initialLoss, loss) = PhaseTimes.Time(Phases, "values", () => OptimiseV(tf, req, layer));
        if (Hparams.NormAnchor)
        {
            vStar = Editing.NormAnchor.Rescale(vStar, v0, _anchor[layer], out bool skipped);
            if (skipped) Interlocked.Increment(ref _anchorSkipped);
        }
        var (kp, right) = PhaseTimes.Time(Phases, "solve", () =>
        {
            var kp = KeyAt(tf, req.Prompt, req.Subject, layer);
            var vCur = MlpOutput(tf, layer, kp);
            double denom = 0;
            for (int i = 0; i < kp.Length; i++) denom += kp[i] * u[i];
            var right = new double[c.DModel];
            for (int j = 0; j < right.Length; j++) right[j] = (vStar[j] - vCur[j]) / denom;
            return (kp, right);
        });
        trace = new RomeTrace(kbar, u, kp, v0, vStar, steps, initialLoss, loss, _templates);
        return new WeightDelta(layer, 1, u, right);
    }

    /// <summary>Key [f] at the subject's last token of template (with "{}" for the subject).</summary>
    internal double[] KeyAt(Transformer tf, string template, string subject, int layer) => _probes.KeyAt(tf, template, subject, layer);

    /// <summary>The MLP output v [d] = k · WDown + b for a key k [f] (host, float64).</summary>
    internal static double[] MlpOutput(Transformer tf, int layer, double[] key) => FactProbes.MlpOutput(tf, layer, key);

    private (int[] Ids, int SubjectLast) Encode(string template, string subject) => _probes.Encode(template, subject);

    // C_l's Cholesky factor, computed once per layer
    private void Factor(int layer, int f)
    {
        if (_chol.ContainsKey(layer)) return;
        var flat = _secondMoment(layer);
        if (flat.Length != (long)f * f) throw new ArgumentException($"second moment of layer {layer} has {flat.Length} values, expected {f}x{f}");
        try { _chol[layer] = Matrix<double>.Build.Dense(f, f, (i, j) => flat[i * f + j]).Cholesky(); }
        catch (ArgumentException)
        {
            // MathNet says only "Matrix must be positive definite": say which statistics and what to do
            throw new ArgumentException($"the key statistics C of layer {layer} ({f} x {f}) are not positive definite, so ROME cannot solve with them: "
                + "the corpus is too small or too repetitive for this layer's width (give a larger --stats-corpus), or set \"mom2_adjustment\": false");
        }
    }

    private (double[] VStar, double[] V0, int Steps, double InitialLoss, double Loss) OptimiseV(Transformer tf, EditRequest req, int layer)
    {
        string targetText = req.TargetNew.StartsWith(' ') ? req.TargetNew : " " + req.TargetNew;
        var target = _tok.Encode(targetText);
        if (target.Length == 0) throw new ArgumentException($"target '{req.TargetNew}' has no tokens");

        // rewriting prompts: context(prompt) + target[:-1], one per template as the reference builds
        // them, row p − 1 + j predicting target[j], each target token scored at its own row as the
        // official code does (kmeng01/memit's rome/compute_v.py; `palimpsest parity` runs it). The
        // older kmeng01/rome gathered every target from row 0's distribution (torch.gather with a
        // [1, N] index), scoring multi-token targets at the wrong positions. Under causal attention row p − 1 + j sees exactly context(prompt) + target[:j], so
        // this is the loss of one prompt per target prefix (each predicting its next token at its
        // last row), averaged the same way, in n rows instead of n prompts: linear in the target's
        // length, where the prompt per prefix was quadratic (60 tokens: 114 s against 9 s for 10).
        var rewrites = new List<RewritePrompt>();
        foreach (var t in _templates!)
        {
            var (ids, idx) = _probes.EncodeRewrite(t.Replace("{}", req.Prompt), req.Subject, _tok.Decode(target.AsSpan(0, target.Length - 1)));
            rewrites.Add(new RewritePrompt(ids, idx, Enumerable.Range(0, target.Length).Select(j => (ids.Length - target.Length + j, target[j])).ToArray()));
        }
        var kl = Encode("{} is a", req.Subject);
        // v₀: MLP output at the lookup token of the bare prompt (the first rewriting prompt), δ = 0
        var v0 = MlpOutput(tf, layer, KeyAt(tf, req.Prompt, req.Subject, layer));
        double v0Norm = Math.Sqrt(v0.Sum(x => x * x));
        var r = DeltaOptimizer.Optimise(tf, layer, InterventionSite.MlpOutput, rewrites, kl, v0Norm, Objective);
        var vStar = v0.Zip(r.Delta, (a, b) => a + b).ToArray();
        return (vStar, v0, r.Steps, r.InitialLoss, r.FinalLoss);
    }
}

/// <summary>Intermediate results of one ROME edit.</summary>
public sealed record RomeTrace(double[] KBar, double[] U, double[] KPrompt, double[] V0, double[] VStar, int Steps, double InitialLoss, double FinalLoss,
    IReadOnlyList<string> ContextTemplates);
