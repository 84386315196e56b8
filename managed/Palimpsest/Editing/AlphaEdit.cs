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
public sealed class AlphaEdit : IPreparedEditor, IRememberingEditor, IAnchoredEditor
{
    private readonly Memit _memit;
    private readonly Func<int, double[]> _secondMoment;
    private readonly Dictionary<int, Matrix<double>> _projection = new();
    private readonly Dictionary<int, Matrix<double>> _previousKeys = new();

    public AlphaEdit(AlphaEditHparams hparams, ITextTokenizer tokenizer, Func<int, double[]> secondMoment)
    {
        Hparams = hparams; _secondMoment = secondMoment;
        _memit = new Memit(hparams.ToMemit(), tokenizer, secondMoment) { MethodName = "AlphaEdit" };
    }

    public AlphaEditHparams Hparams { get; }
    public bool NormAnchored => Hparams.NormAnchor;

    public PhaseTimes? Phases { get => _memit.Phases; set => _memit.Phases = value; }

    /// <summary>Norm-Anchor Scaling: the requests the anchor norm is measured on (MEMIT's z*; see <see cref="NormAnchor"/>).</summary>
    public IReadOnlyList<EditRequest>? AnchorPool { get => _memit.AnchorPool; set => _memit.AnchorPool = value; }

    /// <summary>Norm-Anchor Scaling: the anchor norm, once measured.</summary>
    public double? AnchorNorm => _memit.AnchorNorm;

    public string? AnchorDescription => _memit.AnchorDescription;

    /// <summary>Per edited layer of the last call: keys K [f, n], residuals R [d, n] and the earlier batches' C_p [f, f].</summary>
    public IReadOnlyList<(int Layer, Matrix<double> K, Matrix<double> R, Matrix<double> Cp)>? LastSolves { get; private set; }
    public string Method => "alphaedit";

    public string LastOutcome => ((IEditor)_memit).LastOutcome;

    public void AfterApply(Transformer tf, IReadOnlyList<EditRequest> requests) => Remember(tf, requests);

    /// <summary>The active earlier AlphaEdit edits' keys, recomputed with the current weights (as the reference recomputes them with the edited model), go into C_p.</summary>
    public void Reopen(Transformer tf, IReadOnlyList<JournaledEdit> earlier)
    {
        _previousKeys.Clear();
        var requests = earlier.SelectMany(e => e.Requests).ToList();
        if (requests.Count > 0) Remember(tf, requests);
    }

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

    /// <summary>MEMIT's context templates (see <see cref="IPreparedEditor"/>) and each layer's projector P (from C alone).</summary>
    public void Prepare(Transformer tf)
    {
        _memit.Prepare(tf);
        foreach (int l in Hparams.Layers) Projection(l, tf.Model.Config.DFf);
    }

    /// <summary>C_p of each layer as "cp.{layer}" [f·f] row-major.</summary>
    public IReadOnlyDictionary<string, double[]> SaveMemory(Transformer tf) =>
        _previousKeys.ToDictionary(kv => $"cp.{kv.Key}", kv => kv.Value.ToRowMajorArray());

    public void RestoreMemory(Transformer tf, IReadOnlyDictionary<string, double[]> memory)
    {
        var restored = new Dictionary<int, Matrix<double>>();
        foreach (var (name, values) in memory)
        {
            if (!name.StartsWith("cp.", StringComparison.Ordinal) || !int.TryParse(name[3..], out int layer) || !Hparams.Layers.Contains(layer))
                throw new ArgumentException($"AlphaEdit memory: '{name}' is not the C_p of an edited layer [{string.Join(", ", Hparams.Layers)}]");
            int f = (int)Math.Round(Math.Sqrt(values.Length));
            if ((long)f * f != values.Length) throw new ArgumentException($"AlphaEdit memory: '{name}' has {values.Length} values, not a square matrix");
            restored[layer] = Matrix<double>.Build.DenseOfRowMajor(f, f, values);
        }
        _previousKeys.Clear();
        foreach (var (l, m) in restored) _previousKeys[l] = m;
    }

    public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        if (requests.Count == 0) return [];
        foreach (var r in requests) r.Validate();
        var c = tf.Model.Config;
        var layers = Hparams.Layers;
        Memit.CheckLayers(layers, c.Layers);
        int zLayer = layers[^1], n = requests.Count, f = c.DFf;
        var z = requests.Select(r => PhaseTimes.Time(Phases, "values", () => _memit.ComputeZ(tf, r, zLayer).Z)).ToArray();
        var solves = new List<(int, Matrix<double>, Matrix<double>, Matrix<double>)>();
        LastSolves = solves;
        return _memit.Spread(tf, requests, layers, z, (layer, K, R) =>
        {
            var P = Projection(layer, f);
            var Cp = _previousKeys.TryGetValue(layer, out var prev) ? prev : Matrix<double>.Build.Dense(f, f);
            var A = P * (K * K.Transpose() + Cp) + Matrix<double>.Build.DenseIdentity(f) * Hparams.L2;
            solves.Add((layer, K, R, Cp));
            // ΔW [f, d] = A⁻¹ P K Rᵀ, stored as rank-n factors Left = (A⁻¹ P K)ᵀ, Right = Rᵀ
            var left = A.Solve(P * K);               // [f, n]
            return new WeightDelta(layer, n, left.Transpose().ToRowMajorArray(), R.Transpose().ToRowMajorArray());
        });
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
