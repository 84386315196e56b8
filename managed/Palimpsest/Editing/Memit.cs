using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// MEMIT (Meng et al. 2023; kmeng01/memit): many edits spread over several MLP layers.
///   z*_i = (block output of the last edited layer at the subject) + δ_i  (compute_z)
///   for the edited layers l_1 < ... < l_L, in order, with the earlier ones already edited:
///     K [f, n] = keys at l_i (½ bare prompt + ½ mean over generated contexts; compute_ks)
///     R [d, n] = (z* − current block output of the last layer) / (L − i)
///     ΔW_i [f, d] = (λ C + K Kᵀ)⁻¹ K Rᵀ        (float64, λ = mom2_update_weight; C = I without mom2_adjustment)
/// The weights are edited while the deltas are computed (later layers see earlier ones) and
/// restored exactly before returning: the caller applies the deltas.
/// </summary>
public sealed class Memit : IPreparedEditor, IAnchoredEditor
{
    private readonly ITextTokenizer _tok;
    private readonly FactProbes _probes;
    private readonly Func<int, double[]> _secondMoment;
    internal FactProbes Probes => _probes;
    private IReadOnlyList<IReadOnlyList<string>>? _templates;

    public Memit(MemitHparams hparams, ITextTokenizer tokenizer, Func<int, double[]> secondMoment)
    {
        if (hparams.Layers.Length == 0) throw new ArgumentException("MEMIT needs at least one layer (hparams 'layers')");
        if (hparams.ContextTemplateLength < 1) throw new ArgumentException($"hparams context_template_length must be at least 1 (got {hparams.ContextTemplateLength})");
        Hparams = hparams; _tok = tokenizer; _probes = new FactProbes(tokenizer, hparams.FactToken); _secondMoment = secondMoment;
    }

    public MemitHparams Hparams { get; }
    public bool NormAnchored => Hparams.NormAnchor;

    /// <summary>The method its messages name: "MEMIT", or the editor that runs it inside (AlphaEdit).</summary>
    internal string MethodName { get; init; } = "MEMIT";

    public PhaseTimes? Phases { get; set; }
    public string Method => "memit";

    public string LastOutcome => LastZ is { Count: > 0 } z ? $"{Editors.Loss(z.Average(r => r.InitialLoss))} -> {Editors.Loss(z.Average(r => r.FinalLoss))}" : "-";

    /// <summary>z* of every request of the last call, and the optimisation outcomes.</summary>
    public IReadOnlyList<DeltaResult>? LastZ { get; private set; }

    /// <summary>z* [d] of every request of the last call (the block output of the last edited layer it aims for).</summary>
    public IReadOnlyList<double[]>? LastTargets { get; private set; }

    /// <summary>Per edited layer of the last call: the keys K [f, n] and residuals R [d, n] the update solved for.</summary>
    public IReadOnlyList<(int Layer, Matrix<double> K, Matrix<double> R)>? LastSolves { get; private set; }

    /// <summary>The context templates once prepared: [["{}"], [the generated ones]] (compute_ks averages per group).</summary>
    public IReadOnlyList<IReadOnlyList<string>>? Templates => _templates;

    /// <summary>The context templates (see <see cref="IPreparedEditor"/>).</summary>
    public void Prepare(Transformer tf)
    {
        Editors.CheckLossLayer(Hparams.VLossLayer, tf.Model.Config.Layers);
        _templates ??= ContextTemplates.GenerateMemit(tf, _tok, Hparams.ContextTemplateLength, Hparams.ContextTemplateSeed);
        if (Hparams.NormAnchor && _anchor is null)
            _anchor = Hparams.NasNorm > 0 ? Hparams.NasNorm
                : NormAnchor.Measure(tf, _tok, _probes, AnchorPool ?? throw new ArgumentException($"norm_anchor: {MethodName} needs requests to measure the anchor norm on (AnchorPool, or set nas_norm)"),
                    Hparams.NasRestart ?? 1000, Hparams.Layers[^1], InterventionSite.BlockOutput, Objective);
    }

    /// <summary>Norm-Anchor Scaling: the requests the anchor norm is measured on (sampled; see <see cref="NormAnchor"/>).</summary>
    public IReadOnlyList<EditRequest>? AnchorPool { get; set; }

    /// <summary>Norm-Anchor Scaling: the anchor norm (at the last edited layer), once measured.</summary>
    public double? AnchorNorm => _anchor;

    /// <summary>Norm-Anchor Scaling: requests left unchanged because their ‖v*‖ passed twice the anchor.</summary>
    public int AnchorSkipped { get; private set; }

    private double? _anchor;

    public string? AnchorDescription => _anchor is { } a
        ? $"{a.ToString("0.000", System.Globalization.CultureInfo.InvariantCulture)} at layer {Hparams.Layers[^1]}; {AnchorSkipped} request(s) skipped" : null;

    private DeltaObjective Objective => new(Hparams.VNumGradSteps, Hparams.VLr, Hparams.VWeightDecay, Hparams.ClampNormFactor, Hparams.KlFactor, Hparams.VEarlyStopLoss);

    public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        if (requests.Count == 0) return [];
        foreach (var r in requests) r.Validate();
        var c = tf.Model.Config;
        var layers = Hparams.Layers;
        CheckLayers(layers, c.Layers);
        Prepare(tf);
        int zLayer = layers[^1], n = requests.Count, d = c.DModel, f = c.DFf;

        // z* for every request (from the unedited weights)
        var z = new double[n][];
        var zr = new List<DeltaResult>();
        for (int i = 0; i < n; i++)
        {
            var (zi, res) = PhaseTimes.Time(Phases, "values", () => ComputeZ(tf, requests[i], zLayer));
            z[i] = zi; zr.Add(res);
        }
        LastZ = zr;
        LastTargets = z;

        var solves = new List<(int, Matrix<double>, Matrix<double>)>();
        LastSolves = solves;
        return Spread(tf, requests, layers, z, (layer, K, R) =>
        {
            // mom2_adjustment false: C = I, the plain ridge (λI + KKᵀ)⁻¹ K Rᵀ (no key statistics needed)
            Matrix<double> C;
            if (!Hparams.Mom2Adjustment) C = Matrix<double>.Build.DenseIdentity(f);
            else
            {
                var flat = _secondMoment(layer);
                if (flat.Length != (long)f * f) throw new ArgumentException($"second moment of layer {layer} has {flat.Length} values, expected {f}x{f}");
                C = Matrix<double>.Build.Dense(f, f, (a, b) => flat[a * f + b]);
            }
            var adj = (C * Hparams.Mom2UpdateWeight + K * K.Transpose()).Solve(K); // [f, n] = (λC + KKᵀ)⁻¹ K
            solves.Add((layer, K, R));
            // ΔW [f, d] = adj · Rᵀ: rank n with Left = adjᵀ rows, Right = Rᵀ rows
            return new WeightDelta(layer, n, adj.Transpose().ToRowMajorArray(), R.Transpose().ToRowMajorArray());
        });
    }

    /// <summary>Checks MEMIT-style layers: inside the model and increasing.</summary>
    internal static void CheckLayers(int[] layers, int modelLayers)
    {
        if (layers.Any(l => l < 0 || l >= modelLayers)) throw new ArgumentException($"hparams layers [{string.Join(", ", layers)}] outside the model's {modelLayers} layers");
        if (!layers.SequenceEqual(layers.Order().Distinct())) throw new ArgumentException("hparams layers must be increasing");
        // z* is a change of the last edited layer's output at the subject; after the last block nothing
        // carries it to the answer position, so its gradient would be zero and the edit empty.
        if (layers[^1] >= modelLayers - 1)
            throw new ArgumentException($"hparams layers: the last edited layer ({layers[^1]}) must be below the model's last layer ({modelLayers - 1})");
    }

    /// <summary>
    /// MEMIT's layer loop, shared with AlphaEdit: for each edited layer in order, with the earlier
    /// ones of this batch applied, K [f, n] (keys) and R [d, n] = (z* − current z) / (layers left);
    /// `solve` turns them into the layer's delta, which is applied before the next layer. The
    /// weights are restored exactly before returning.
    /// </summary>
    internal IReadOnlyList<WeightDelta> Spread(Transformer tf, IReadOnlyList<EditRequest> requests, int[] layers, double[][] z,
        Func<int, Matrix<double>, Matrix<double>, WeightDelta> solve)
    {
        int n = requests.Count, d = tf.Model.Config.DModel, f = tf.Model.Config.DFf, zLayer = layers[^1];
        var deltas = new List<WeightDelta>();
        var restore = new List<(int Layer, double[] Old)>();
        try
        {
            for (int li = 0; li < layers.Length; li++)
            {
                int layer = layers[li];
                var K = Matrix<double>.Build.Dense(f, n);
                var R = Matrix<double>.Build.Dense(d, n);
                PhaseTimes.Time(Phases, "keys", () =>
                {
                    for (int i = 0; i < n; i++)
                    {
                        K.SetColumn(i, Keys(tf, requests[i], layer));
                        var cur = _probes.BlockOutputAt(tf, requests[i].Prompt, requests[i].Subject, zLayer);
                        for (int j = 0; j < d; j++) R[j, i] = (z[i][j] - cur[j]) / (layers.Length - li);
                    }
                    return 0;
                });
                var delta = PhaseTimes.Time(Phases, "solve", () => solve(layer, K, R));
                deltas.Add(delta);
                restore.Add((layer, tf.Model.ApplyDelta(delta)));
            }
        }
        finally
        {
            // undo in reverse order: each saved copy is the weights before that layer's delta
            for (int i = restore.Count - 1; i >= 0; i--) tf.Model.SetDownProjection(restore[i].Layer, restore[i].Old);
        }
        return deltas;
    }

    /// <summary>compute_ks: ½ · key of the bare prompt + ½ · mean key over the generated contexts.</summary>
    internal double[] Keys(Transformer tf, EditRequest req, int layer)
    {
        Prepare(tf);
        var k = new double[tf.Model.Config.DFf];
        foreach (var type in _templates!)
        {
            var mean = new double[k.Length];
            foreach (var kt in _probes.KeysAt(tf, type.Select(t => t.Replace("{}", req.Prompt)).ToArray(), req.Subject, layer))
                for (int j = 0; j < k.Length; j++) mean[j] += kt[j] / type.Count;
            for (int j = 0; j < k.Length; j++) k[j] += mean[j] / _templates.Count;
        }
        return k;
    }

    /// <summary>compute_z: z* = block output of zLayer at the subject + the optimised δ.</summary>
    internal (double[] Z, DeltaResult Result) ComputeZ(Transformer tf, EditRequest req, int zLayer)
    {
        Prepare(tf);
        string targetText = req.TargetNew.StartsWith(' ') ? req.TargetNew : " " + req.TargetNew;
        var target = _tok.Encode(targetText);
        if (target.Length == 0) throw new ArgumentException($"target '{req.TargetNew}' has no tokens");
        // context(prompt) + target[:-1]; targets on the rows that predict each target token
        var prompts = new List<RewritePrompt>();
        foreach (var type in _templates!)
            foreach (var t in type)
            {
                var (ids, idx) = _probes.EncodeRewrite(t.Replace("{}", req.Prompt), req.Subject, _tok.Decode(target.AsSpan(0, target.Length - 1)));
                // ids = prompt (p tokens) + target[:-1]; row p − 1 + j predicts target[j]
                var targets = Enumerable.Range(0, target.Length).Select(j => (ids.Length - target.Length + j, target[j])).ToArray();
                prompts.Add(new RewritePrompt(ids, idx, targets));
            }
        var kl = _probes.Encode("{} is a", req.Subject);
        var z0 = _probes.BlockOutputAt(tf, req.Prompt, req.Subject, zLayer);
        double z0Norm = Math.Sqrt(z0.Sum(x => x * x));
        var r = DeltaOptimizer.Optimise(tf, zLayer, InterventionSite.BlockOutput, prompts, kl, z0Norm, Objective);
        if (!Hparams.NormAnchor) return (z0.Zip(r.Delta, (a, b) => a + b).ToArray(), r);
        // NAS: δ acts on the MLP output v₀ at the lookup token; v* = v₀ + δ gets the anchor's norm
        // and the block output's target is the residual before the MLP plus it: (z₀ − v₀) + v*
        var v0 = FactProbes.MlpOutput(tf, zLayer, _probes.KeyAt(tf, req.Prompt, req.Subject, zLayer));
        var vStar = NormAnchor.Rescale(v0.Zip(r.Delta, (a, b) => a + b).ToArray(), v0, _anchor!.Value, out bool skipped);
        if (skipped) AnchorSkipped++;
        return (Enumerable.Range(0, z0.Length).Select(j => z0[j] - v0[j] + vStar[j]).ToArray(), r);
    }
}
