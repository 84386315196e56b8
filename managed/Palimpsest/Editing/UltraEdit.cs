using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// UltraEdit (Gu et al. 2025, "Training-, Subject-, and Memory-Free Lifelong Editing"; EasyEdit
/// easyeditor/models/ultraedit): one forward and backward per batch of requests, no optimisation loop.
///   per batch of batch_size requests (prompt + " " + target, packed), one forward and backward of
///     L = mean over the batch's target tokens of −log p(token)
///   keys k_t [f] (input of each edited down-projection) and value gradients g_t = ∂L/∂(its output) [d]
///     at every token (token "mask") or the target's tokens ("ans")
///   lifelong normalisation: the running moments of [k ‖ g] over every edit so far (this one included)
///     give ẑ = (z − mean) / (std + ε) = [k̂ ‖ ĝ]                         (<see cref="LifelongNormalizer"/>)
///   V [N, d], row t = −lr · ‖k̂_t‖² · ĝ_t
///   ΔW [f, d] = (KᵀK + I)⁻¹ Kᵀ V,  K [N, f] the raw keys                    (one ridge solve per layer)
/// All layers' deltas come from the same forward and backward and are applied together. ΔW is kept
/// as rank-N factors Kᵀ · U with U = (KKᵀ + I)⁻¹ V [N, d] (the same matrix by the push-through identity)
/// when N &lt; f, so the solve is N×N; otherwise as the dense f×f solve, stored in min(f, d) factors.
/// </summary>
public sealed class UltraEdit : IEditor, IRememberingEditor
{
    private readonly ITextTokenizer _tok;

    public UltraEdit(UltraEditHparams hparams, ITextTokenizer tokenizer)
    {
        hparams.Validate();
        Hparams = hparams; _tok = tokenizer;
    }

    public UltraEditHparams Hparams { get; }

    public PhaseTimes? Phases { get; set; }
    public string Method => "ultraedit";

    /// <summary>The running moments of [k ‖ ∇v] over every edit this editor made (or was given: <see cref="RestoreMemory"/>).</summary>
    public LifelongNormalizer Normalizer { get; } = new();

    /// <summary>The last call's rows' moments per shape, in <see cref="LifelongNormalizer.Save"/>'s form: what that edit added to the normaliser.</summary>
    public IReadOnlyDictionary<string, double[]>? LastContribution { get; private set; }

    public IReadOnlyDictionary<string, double[]>? LastMemoryContribution => LastContribution;

    public string LastOutcome => LastSolves is { Count: > 0 } s ? $"{s[0].K.RowCount} rows" : "-";

    /// <summary>The normaliser continues from the active earlier edits' journaled moments, merged oldest first (as they were made).</summary>
    public void Reopen(Transformer tf, IReadOnlyList<JournaledEdit> earlier)
    {
        Normalizer.Clear();
        foreach (var e in earlier)
            foreach (var ((k, v), m) in LifelongNormalizer.Read(e.Memory, $"edit {e.Id}'s UltraEdit memory"))
                Normalizer.Add(k, v, m);
    }

    /// <summary>Per edited layer of the last call: the raw keys K [N, f] and the value rows V [N, d] the ridge solve used.</summary>
    public IReadOnlyList<(int Layer, Matrix<double> K, Matrix<double> V)>? LastSolves { get; private set; }

    public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        if (requests.Count == 0) return [];
        foreach (var r in requests) r.Validate();
        var c = tf.Model.Config;
        foreach (int l in Hparams.Layers)
            if (l < 0 || l >= c.Layers) throw new ArgumentException($"hparams layers [{string.Join(", ", Hparams.Layers)}] outside the model's layers 0..{c.Layers - 1}");
        int f = c.DFf, d = c.DModel;
        var layers = Hparams.Layers.Order().ToArray();

        // keys and value gradients of every batch, per layer (rows in the same order for each layer)
        var keys = layers.ToDictionary(l => l, _ => new List<double[]>());
        var grads = layers.ToDictionary(l => l, _ => new List<double[]>());
        PhaseTimes.Time(Phases, "values", () =>
        {
            foreach (var batch in requests.Chunk(Hparams.BatchSize)) Collect(tf, batch, layers, keys, grads);
            return 0;
        });

        // the lifelong normaliser takes this edit's rows first (the reference updates it before solving)
        var rows = layers.SelectMany(l => keys[l].Zip(grads[l], (k, g) => (double[])[.. k, .. g])).ToList();
        var contribution = RowMoments.Of(rows, f + d);
        Normalizer.Add(f, d, contribution);
        LastContribution = new Dictionary<string, double[]>
        {
            [$"normalizer.{f}x{d}.n"] = [contribution.Count], [$"normalizer.{f}x{d}.mean"] = contribution.Mean, [$"normalizer.{f}x{d}.m2"] = contribution.M2,
        };

        var (deltas, solves) = PhaseTimes.Time(Phases, "solve", () => SolveAll(layers, keys, grads, f, d));
        LastSolves = solves;
        return deltas;
    }

    // per layer: V's rows from the normalised features, then the ridge solve
    private (List<WeightDelta>, List<(int, Matrix<double>, Matrix<double>)>) SolveAll(int[] layers, Dictionary<int, List<double[]>> keys,
        Dictionary<int, List<double[]>> grads, int f, int d)
    {
        var deltas = new List<WeightDelta>();
        var solves = new List<(int, Matrix<double>, Matrix<double>)>();
        foreach (int layer in layers)
        {
            int n = keys[layer].Count;
            var K = Matrix<double>.Build.Dense(n, f, (i, j) => keys[layer][i][j]);
            var V = Matrix<double>.Build.Dense(n, d);
            var z = new double[f + d];
            for (int i = 0; i < n; i++)
            {
                keys[layer][i].CopyTo(z, 0);
                grads[layer][i].CopyTo(z, f);
                Normalizer.Normalise(f, d, z);
                double kk = 0;
                for (int j = 0; j < f; j++) kk += z[j] * z[j];
                double coeff = -Hparams.Lr * kk;
                for (int j = 0; j < d; j++) V[i, j] = coeff * z[f + j];
            }
            solves.Add((layer, K, V));
            deltas.Add(Solve(layer, K, V));
        }
        return (deltas, solves);
    }

    /// <summary>ΔW = (KᵀK + I)⁻¹ KᵀV [f, d] as a WeightDelta: rank-N factors Kᵀ (KKᵀ + I)⁻¹ V when N &lt; f, else dense (rank f, identity left).</summary>
    internal static WeightDelta Solve(int layer, Matrix<double> K, Matrix<double> V)
    {
        int n = K.RowCount, f = K.ColumnCount;
        if (n < f)
        {
            var gram = K * K.Transpose() + Matrix<double>.Build.DenseIdentity(n);   // [N, N]
            var U = gram.Cholesky().Solve(V);                                         // [N, d]
            return new WeightDelta(layer, n, K.ToRowMajorArray(), U.ToRowMajorArray());
        }
        var normal = K.Transpose() * K + Matrix<double>.Build.DenseIdentity(f);      // [f, f]
        var dw = normal.Cholesky().Solve(K.Transpose() * V);                         // [f, d]
        int d = V.ColumnCount;
        // a dense ΔW in the fewer factors: Σ_j ΔW[:, j] ⊗ e_j (rank d) when d < f, else e_i ⊗ ΔW[i, :] (rank f)
        return d < f
            ? new WeightDelta(layer, d, dw.Transpose().ToRowMajorArray(), Matrix<double>.Build.DenseIdentity(d).ToRowMajorArray())
            : new WeightDelta(layer, f, Matrix<double>.Build.DenseIdentity(f).ToRowMajorArray(), dw.ToRowMajorArray());
    }

    // One batch's forward and backward (packed; a pack never passes the context): the loss is the
    // mean over the batch's target tokens, so a pack's cross-entropy is scaled by its share of them.
    private void Collect(Transformer tf, IReadOnlyList<EditRequest> batch, int[] layers, Dictionary<int, List<double[]>> keys, Dictionary<int, List<double[]>> grads)
    {
        var c = tf.Model.Config;
        var b = tf.Model.Backend;
        var seqs = batch.Select(r =>
        {
            var prompt = _tok.EncodePrompt(r.FilledPrompt);
            var target = _tok.Encode(r.TargetNew.StartsWith(' ') ? r.TargetNew : " " + r.TargetNew);
            if (prompt.Length == 0) throw new ArgumentException($"prompt '{r.FilledPrompt}' has no tokens");
            if (target.Length == 0) throw new ArgumentException($"target '{r.TargetNew}' has no tokens");
            if (prompt.Length + target.Length > c.MaxPositions)
                throw new ArgumentException($"prompt + target of '{r.Subject}' is {prompt.Length + target.Length} tokens, longer than the model's context ({c.MaxPositions})");
            return (Prompt: prompt, Target: target);
        }).ToList();
        int targetTokens = seqs.Sum(s => s.Target.Length);
        var packs = new List<List<(int[] Prompt, int[] Target)>>();
        int tokens = 0;
        foreach (var s in seqs)
        {
            int len = s.Prompt.Length + s.Target.Length;
            if (packs.Count == 0 || tokens + len > c.MaxPositions) { packs.Add([]); tokens = 0; }
            packs[^1].Add(s);
            tokens += len;
        }
        foreach (var pack in packs)
        {
            var ids = new List<int>(); var segments = new List<int>(); var logitRows = new List<int>(); var targets = new List<int>(); var used = new List<int>();
            foreach (var (prompt, target) in pack)
            {
                int at = ids.Count;
                ids.AddRange(prompt); ids.AddRange(target);
                segments.Add(prompt.Length + target.Length);
                // row p − 1 + j predicts target[j]; the last target token predicts nothing we score
                for (int j = 0; j < target.Length; j++) { logitRows.Add(at + prompt.Length - 1 + j); targets.Add(target[j]); }
                int from = Hparams.Token == "ans" ? at + prompt.Length : at;
                for (int t = from; t < at + prompt.Length + target.Length; t++) used.Add(t);
            }
            int T = ids.Count;
            using var r = tf.Forward(ids.ToArray(), new ForwardOptions
            {
                Segments = segments, LogitRows = logitRows, KeepForBackward = true, CaptureKeysAt = layers,
            });
            using var dl = b.Zeros(r.Logits.Shape);
            b.CrossEntropy(r.Logits, targets.ToArray(), dl, scale: targets.Count / (double)targetTokens);
            var outGrads = layers.ToDictionary(l => l, _ => b.Zeros(T, c.DModel));
            try
            {
                tf.Backward(r, dl, null, mlpOutputGrads: outGrads);
                foreach (int l in layers)
                {
                    var k = new double[(long)T * c.DFf];
                    var g = new double[(long)T * c.DModel];
                    b.ToHost(r.MlpKeys[l], k);
                    b.ToHost(outGrads[l], g);
                    foreach (int t in used)
                    {
                        keys[l].Add(k.AsSpan(t * c.DFf, c.DFf).ToArray());
                        grads[l].Add(g.AsSpan(t * c.DModel, c.DModel).ToArray());
                    }
                }
            }
            finally
            {
                foreach (var g in outGrads.Values) g.Dispose();
            }
        }
    }

    public IReadOnlyDictionary<string, double[]> SaveMemory(Transformer tf) => Normalizer.Save();

    public void RestoreMemory(Transformer tf, IReadOnlyDictionary<string, double[]> memory) => Normalizer.Restore(memory, "UltraEdit memory");
}
