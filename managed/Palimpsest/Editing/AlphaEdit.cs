using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// AlphaEdit (Fang et al. 2025; jianghoucheng/AlphaEdit): MEMIT's z* and keys, with the update
/// projected onto the null space of the preserved knowledge so that it leaves those keys alone.
///   P_l = U Uᵀ, U = eigenvectors of C_l with eigenvalue &lt; nullspace_threshold
///   ΔW_l [f, d] = (P (K Kᵀ + C_p) + α I)⁻¹ P K Rᵀ     (float64, α = L2)
/// where C_p accumulates K Kᵀ of earlier batches (recomputed with the edited model: call
/// <see cref="Remember"/> after the deltas were applied). Since ΔW = P(·)/α lies in range(P),
/// k₀ᵀ ΔW = 0 for every preserved key k₀ with P k₀ = 0.
/// </summary>
public sealed class AlphaEdit : IEditor
{
    private readonly Memit _memit;
    private readonly Func<int, double[]> _secondMoment;
    private readonly Dictionary<int, Matrix<double>> _projection = new();
    private readonly Dictionary<int, Matrix<double>> _previousKeys = new();

    public AlphaEdit(AlphaEditHparams hparams, ITextTokenizer tokenizer, Func<int, double[]> secondMoment)
    {
        Hparams = hparams; _secondMoment = secondMoment;
        _memit = new Memit(hparams.ToMemit(), tokenizer, secondMoment);
    }

    public AlphaEditHparams Hparams { get; }

    /// <summary>Per edited layer of the last call: keys K [f, n], residuals R [d, n] and the earlier batches' C_p [f, f].</summary>
    public IReadOnlyList<(int Layer, Matrix<double> K, Matrix<double> R, Matrix<double> Cp)>? LastSolves { get; private set; }
    public string Method => "AlphaEdit";

    /// <summary>The null-space projector P [f, f] of a layer (computed once from C).</summary>
    public Matrix<double> Projection(int layer, int f)
    {
        if (_projection.TryGetValue(layer, out var p)) return p;
        var flat = _secondMoment(layer);
        if (flat.Length != (long)f * f) throw new ArgumentException($"second moment of layer {layer} has {flat.Length} values, expected {f}x{f}");
        var C = Matrix<double>.Build.Dense(f, f, (a, b) => flat[a * f + b]);
        var evd = C.Evd(MathNet.Numerics.LinearAlgebra.Symmetricity.Symmetric);
        var cols = Enumerable.Range(0, f).Where(i => evd.EigenValues[i].Real < Hparams.NullspaceThreshold).ToArray();
        var U = Matrix<double>.Build.Dense(f, cols.Length, (r, j) => evd.EigenVectors[r, cols[j]]);
        return _projection[layer] = U * U.Transpose();
    }

    public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        if (requests.Count == 0) return [];
        foreach (var r in requests) r.Validate();
        var c = tf.Model.Config;
        var layers = Hparams.Layers;
        if (layers.Any(l => l < 0 || l >= c.Layers)) throw new ArgumentException($"hparams layers [{string.Join(", ", layers)}] outside the model's {c.Layers} layers");
        if (!layers.SequenceEqual(layers.Order().Distinct())) throw new ArgumentException("hparams layers must be increasing");
        int zLayer = layers[^1], n = requests.Count, d = c.DModel, f = c.DFf;
        var z = requests.Select(r => _memit.ComputeZ(tf, r, zLayer).Z).ToArray();
        var deltas = new List<WeightDelta>();
        var solves = new List<(int, Matrix<double>, Matrix<double>, Matrix<double>)>();
        LastSolves = solves;
        var restore = new List<(int Layer, double[] Old)>();
        try
        {
            for (int li = 0; li < layers.Length; li++)
            {
                int layer = layers[li];
                var K = Matrix<double>.Build.Dense(f, n);
                var R = Matrix<double>.Build.Dense(d, n);
                for (int i = 0; i < n; i++)
                {
                    K.SetColumn(i, _memit.Keys(tf, requests[i], layer));
                    var cur = _memit.Probes.BlockOutputAt(tf, requests[i].Prompt, requests[i].Subject, zLayer);
                    for (int j = 0; j < d; j++) R[j, i] = (z[i][j] - cur[j]) / (layers.Length - li);
                }
                var P = Projection(layer, f);
                var Cp = _previousKeys.TryGetValue(layer, out var prev) ? prev : Matrix<double>.Build.Dense(f, f);
                var A = P * (K * K.Transpose() + Cp) + Matrix<double>.Build.DenseIdentity(f) * Hparams.L2;
                // ΔW [f, d] = A⁻¹ P K Rᵀ, stored as rank-n factors Left = (A⁻¹ P K)ᵀ, Right = Rᵀ
                var left = A.Solve(P * K);               // [f, n]
                var delta = new WeightDelta(layer, n, left.Transpose().ToRowMajorArray(), R.Transpose().ToRowMajorArray());
                deltas.Add(delta);
                solves.Add((layer, K, R, Cp));
                restore.Add((layer, tf.Model.ApplyDelta(delta)));
            }
        }
        finally
        {
            for (int i = restore.Count - 1; i >= 0; i--) tf.Model.SetDownProjection(restore[i].Layer, restore[i].Old);
        }
        return deltas;
    }

    /// <summary>After the batch's deltas were applied: C_p += K Kᵀ of its keys, recomputed with the edited weights.</summary>
    public void Remember(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        int f = tf.Model.Config.DFf;
        foreach (var layer in Hparams.Layers)
        {
            var K = Matrix<double>.Build.Dense(f, requests.Count);
            for (int i = 0; i < requests.Count; i++) K.SetColumn(i, _memit.Keys(tf, requests[i], layer));
            var kk = K * K.Transpose();
            _previousKeys[layer] = _previousKeys.TryGetValue(layer, out var prev) ? prev + kk : kk;
        }
    }
}
