using Palimpsest.Editing;

namespace Palimpsest.Analysis;

/// <summary>
/// One rank-one edit of a down-projection W [f, d] as the interference formula sees it:
/// ΔW = Direction ⊗ ValueDelta, with Direction · Key = 1. Then for any key k (row-vector
/// convention, output k·W): k·ΔW = p(k) δ with p(k) = Direction · k, and Key·ΔW = δ exactly.
/// For ROME's closed form Direction = C⁻¹k_e / (k_eᵀC⁻¹k_e), so p(k) is the superposition
/// paper's p(k_e, k) = k_eᵀC⁻¹k / k_eᵀC⁻¹k_e.
/// </summary>
/// <param name="Key">k_e [f], the edited fact's key.</param>
/// <param name="Direction">[f], the key-space factor, scaled so that Direction · Key = 1.</param>
/// <param name="ValueDelta">δ(v_e) [d] = v_e − k_e·W_before: what the edit adds to the fact's output.</param>
public sealed record RankOneEdit(double[] Key, double[] Direction, double[] ValueDelta)
{
    /// <summary>p(k_e, k) = Direction · k for a key k [f].</summary>
    public double P(ReadOnlySpan<double> k) => Interference.Dot(Direction, k);

    /// <summary>ΔW = Direction ⊗ ValueDelta as a rank-one WeightDelta of <paramref name="layer"/>.</summary>
    public WeightDelta ToWeightDelta(int layer) => new(layer, 1, (double[])Direction.Clone(), (double[])ValueDelta.Clone());

    /// <summary>ROME's closed form for key k [f] and value change δ [d]: Direction = C⁻¹k / (kᵀC⁻¹k).</summary>
    public static RankOneEdit RomeForm(InverseSecondMoment cinv, double[] key, double[] valueDelta)
    {
        var y = cinv.Solve(key);
        double s = Interference.Dot(y, key);
        if (!(s > 0)) throw new ArgumentException($"kᵀC⁻¹k = {s}: a zero key cannot be edited");
        for (int i = 0; i < y.Length; i++) y[i] /= s;
        return new RankOneEdit((double[])key.Clone(), y, (double[])valueDelta.Clone());
    }

    /// <summary>
    /// The edit a rank-one WeightDelta (Left [f] ⊗ Right [d]) makes to the fact with key k [f]:
    /// δ = (Left · k) Right, Direction = Left / (Left · k), so Direction ⊗ δ = ΔW exactly. Our
    /// ROME's Left is C⁻¹k̄ with k̄ the key averaged over context templates, not C⁻¹k of the bare
    /// prompt, so its p is close to, not equal to, the paper's whitened p.
    /// </summary>
    public static RankOneEdit FromDelta(WeightDelta delta, double[] key)
    {
        if (delta.Rank != 1) throw new ArgumentException($"the interference formula is for rank-one edits (this delta has rank {delta.Rank})");
        if (key.Length != delta.KeyDim) throw new ArgumentException($"key of length {key.Length}, the delta's key space is {delta.KeyDim}");
        double s = Interference.Dot(delta.Left, key);
        if (s == 0) throw new ArgumentException("the delta's key direction is orthogonal to the key: the edit does not touch this fact");
        return new RankOneEdit((double[])key.Clone(), delta.Left.Select(x => x / s).ToArray(), delta.Right.Select(x => x * s).ToArray());
    }
}

/// <summary>
/// Size of the predicted drift after the first Edits edits: Frobenius norm of Δ_o [m, d] and the
/// mean and max of its row norms (one row per original key); the same for Δ_e over the edits made
/// so far (the first edit has no earlier edit: 0).
/// </summary>
public sealed record InterferenceStep(int Edits, double OriginalNorm, double OriginalMeanRow, double OriginalMaxRow,
    double EarlierNorm, double EarlierMeanRow);

/// <summary>
/// Predicted drifts after a whole stream: Original [m, d] (row j = Δ_o[:, j], the drift of original
/// key j's output), Earlier [n, d] (row j = Δ_e[:, j], the drift of edit j's output caused by the
/// edits after it), and the growth step by step.
/// </summary>
public sealed record InterferenceResult(double[] Original, double[] Earlier, IReadOnlyList<InterferenceStep> Steps);

/// <summary>After Edits applied deltas: the predicted Δ_o against the measured W_t K − W_0 K (both [m, d]).</summary>
public sealed record IdentityStep(int Edits, double PredictedNorm, double MeasuredNorm, double MaxAbsError);

/// <summary>The identity checked along a stream, plus the earlier-edit drift at the end (n edits).</summary>
public sealed record IdentityCheck(IReadOnlyList<IdentityStep> Steps, double EarlierMaxAbsError)
{
    /// <summary>The largest |predicted − measured| over all checked steps and the earlier-edit check.</summary>
    public double MaxAbsError => Math.Max(EarlierMaxAbsError, Steps.Count == 0 ? 0 : Steps.Max(s => s.MaxAbsError));
}

/// <summary>
/// The interference term of a stream of rank-one (ROME) edits e₁..e_n at one layer ("Knowledge in
/// Superposition", eq. for lifelong editing): after n edits the output of an original key kⱼ moves by
///   Δ_o[:, j] = Σᵢ p(k_{eᵢ}, kⱼ) δ(v_{eᵢ}),  δ(v_{eᵢ}) = v_{eᵢ} − W_{i−1} k_{eᵢ},
/// and edit j's own output by Δ_e[:, j] = Σ_{i>j} p(k_{eᵢ}, k_{eⱼ}) δ(v_{eᵢ}). Because each ROME
/// ΔWᵢ maps k to p(k_{eᵢ}, k) δᵢ exactly, Δ_o = W_n K − W_0 K is an identity, not an approximation:
/// <see cref="Check"/> verifies it against the weights. Keys are rows ([m, f]); W is [f, d]
/// (canonical in→out layout, output k·W), so "W k" of the paper is k·W here.
/// </summary>
public static class Interference
{
    /// <summary>
    /// A stream of ROME-form edits from targets: for each (kᵢ [f], vᵢ [d]) in order,
    /// δᵢ = vᵢ − kᵢ·W_{i−1} and W_i = W_{i−1} + C⁻¹kᵢ ⊗ δᵢ / (kᵢᵀC⁻¹kᵢ), starting from w0 [f, d]
    /// (not modified). vᵢ is the wanted value of k·W (any bias of the layer left out).
    /// </summary>
    public static IReadOnlyList<RankOneEdit> RomeStream(double[] w0, int f, int d, InverseSecondMoment cinv,
        IReadOnlyList<(double[] Key, double[] Value)> targets)
    {
        CheckShape(w0, f, d);
        if (cinv.Dim != f) throw new ArgumentException($"C is {cinv.Dim}-dimensional, W has {f} rows");
        var w = (double[])w0.Clone();
        var edits = new List<RankOneEdit>(targets.Count);
        foreach (var (k, v) in targets)
        {
            if (k.Length != f || v.Length != d) throw new ArgumentException($"target ({k.Length}, {v.Length}), expected key [{f}] and value [{d}]");
            var cur = RowTimes(k, w, f, d);
            var delta = new double[d];
            for (int j = 0; j < d; j++) delta[j] = v[j] - cur[j];
            var e = RankOneEdit.RomeForm(cinv, k, delta);
            AddOuter(w, e.Direction, e.ValueDelta, f, d);
            edits.Add(e);
        }
        return edits;
    }

    /// <summary>
    /// Δ_o [m, d] for original keys [m, f], Δ_e [n, d] for the edits' own keys, and their norms after
    /// each edit (incremental: O(n (m + n) (f + d)) in all).
    /// </summary>
    public static InterferenceResult Compute(IReadOnlyList<RankOneEdit> edits, double[] originalKeys, int m)
    {
        if (edits.Count == 0) throw new ArgumentException("no edits");
        int f = edits[0].Key.Length, d = edits[0].ValueDelta.Length, n = edits.Count;
        foreach (var e in edits)
            if (e.Key.Length != f || e.Direction.Length != f || e.ValueDelta.Length != d)
                throw new ArgumentException("edits of different shapes in one stream");
        if (originalKeys.Length != (long)m * f) throw new ArgumentException($"original keys have {originalKeys.Length} values, expected {m}x{f}");
        var orig = new double[(long)m * d];
        var earlier = new double[(long)n * d];
        var steps = new List<InterferenceStep>(n);
        for (int t = 0; t < n; t++)
        {
            var e = edits[t];
            for (int j = 0; j < m; j++) Axpy(e.P(originalKeys.AsSpan(j * f, f)), e.ValueDelta, orig.AsSpan(j * d, d));
            // edit t moves the outputs of the edits before it; its own key gets exactly δ_t (p = 1), not drift
            for (int j = 0; j < t; j++) Axpy(e.P(edits[j].Key), e.ValueDelta, earlier.AsSpan(j * d, d));
            var (on, omean, omax) = RowNorms(orig, m, d);
            var (en, emean, _) = RowNorms(earlier, t, d); // edits 0..t−1 are the earlier ones
            steps.Add(new InterferenceStep(t + 1, on, omean, omax, en, emean));
        }
        return new InterferenceResult(orig, earlier, steps);
    }

    /// <summary>
    /// Applies <paramref name="applied"/> (the weight changes really made, any rank) one by one to a
    /// copy of w0 [f, d] and compares, after every <paramref name="stride"/>-th edit and the last,
    /// the measured W_t K − W_0 K [m, d] with Δ_o predicted from <paramref name="predicted"/> (keys and
    /// value deltas through p). At the end it also compares k_{eⱼ}·(W_n − W_j) with Δ_e. Cost: one
    /// K·W [m, f, d] product per checked step.
    /// </summary>
    public static IdentityCheck Check(double[] w0, int f, int d, IReadOnlyList<WeightDelta> applied, IReadOnlyList<RankOneEdit> predicted,
        double[] originalKeys, int m, int stride = 1)
    {
        CheckShape(w0, f, d);
        if (applied.Count != predicted.Count) throw new ArgumentException($"{applied.Count} applied deltas but {predicted.Count} predicted edits");
        if (stride < 1) throw new ArgumentOutOfRangeException(nameof(stride), "stride must be >= 1");
        int n = applied.Count;
        var pred = Compute(predicted, originalKeys, m);
        var w = (double[])w0.Clone();
        var base0 = RowsTimes(originalKeys, m, w0, f, d);
        var editOutAfterOwn = new double[(long)n * d]; // k_{eⱼ}·W_j
        var steps = new List<IdentityStep>();
        var running = new double[(long)m * d];         // Δ_o after t edits, rebuilt from p so each step is compared
        for (int t = 0; t < n; t++)
        {
            var a = applied[t];
            if (a.KeyDim != f || a.ValueDim != d) throw new ArgumentException($"applied delta {t} is [{a.KeyDim}, {a.ValueDim}], W is [{f}, {d}]");
            for (int r = 0; r < a.Rank; r++) AddOuter(w, a.Left.AsSpan(r * f, f), a.Right.AsSpan(r * d, d), f, d);
            var e = predicted[t];
            for (int j = 0; j < m; j++) Axpy(e.P(originalKeys.AsSpan(j * f, f)), e.ValueDelta, running.AsSpan(j * d, d));
            RowTimes(e.Key, w, f, d).CopyTo(editOutAfterOwn, (long)t * d);
            if ((t + 1) % stride != 0 && t != n - 1) continue;
            var now = RowsTimes(originalKeys, m, w, f, d);
            double err = 0, measured = 0, predictedNorm = 0;
            for (long i = 0; i < now.Length; i++)
            {
                double diff = now[i] - base0[i];
                measured += diff * diff;
                predictedNorm += running[i] * running[i];
                err = Math.Max(err, Math.Abs(diff - running[i]));
            }
            steps.Add(new IdentityStep(t + 1, Math.Sqrt(predictedNorm), Math.Sqrt(measured), err));
        }
        double earlierErr = 0;
        for (int j = 0; j < n; j++)
        {
            var final = RowTimes(predicted[j].Key, w, f, d);
            for (int c = 0; c < d; c++)
                earlierErr = Math.Max(earlierErr, Math.Abs(final[c] - editOutAfterOwn[(long)j * d + c] - pred.Earlier[(long)j * d + c]));
        }
        return new IdentityCheck(steps, earlierErr);
    }

    internal static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"vectors of lengths {a.Length} and {b.Length}");
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    // y += a x
    private static void Axpy(double a, ReadOnlySpan<double> x, Span<double> y)
    {
        if (a == 0) return;
        for (int i = 0; i < y.Length; i++) y[i] += a * x[i];
    }

    // k [f] · W [f, d] -> [d]
    private static double[] RowTimes(ReadOnlySpan<double> k, double[] w, int f, int d)
    {
        var o = new double[d];
        for (int i = 0; i < f; i++) Axpy(k[i], w.AsSpan(i * d, d), o);
        return o;
    }

    // K [m, f] · W [f, d] -> [m, d]
    private static double[] RowsTimes(double[] k, int m, double[] w, int f, int d)
    {
        var o = new double[(long)m * d];
        for (int j = 0; j < m; j++) RowTimes(k.AsSpan(j * f, f), w, f, d).CopyTo(o, (long)j * d);
        return o;
    }

    // W [f, d] += u [f] ⊗ v [d]
    private static void AddOuter(double[] w, ReadOnlySpan<double> u, ReadOnlySpan<double> v, int f, int d)
    {
        for (int i = 0; i < f; i++) Axpy(u[i], v, w.AsSpan(i * d, d));
    }

    // (Frobenius norm, mean row norm, max row norm) of the first `rows` rows of x [*, d]
    private static (double Norm, double Mean, double Max) RowNorms(double[] x, int rows, int d)
    {
        double total = 0, sum = 0, max = 0;
        for (int j = 0; j < rows; j++)
        {
            double s = 0;
            for (int c = 0; c < d; c++) s += x[(long)j * d + c] * x[(long)j * d + c];
            total += s; sum += Math.Sqrt(s); max = Math.Max(max, Math.Sqrt(s));
        }
        return (Math.Sqrt(total), rows == 0 ? 0 : sum / rows, max);
    }

    private static void CheckShape(double[] w, int f, int d)
    {
        if (f <= 0 || d <= 0) throw new ArgumentException($"W shape [{f}, {d}] must be positive");
        if (w.Length != (long)f * d) throw new ArgumentException($"W has {w.Length} values, expected {f}x{d}");
    }
}
