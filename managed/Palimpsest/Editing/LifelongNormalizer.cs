namespace Palimpsest.Editing;

/// <summary>Count, mean [m] and sum of squared deviations M2 [m] of a set of rows of width m.</summary>
public sealed record RowMoments(double Count, double[] Mean, double[] M2)
{
    /// <summary>The rows' moments by two passes (mean first, then the squared deviations from it): the reference to compare running moments with.</summary>
    public static RowMoments Of(IReadOnlyList<double[]> rows, int width)
    {
        var mean = new double[width];
        var m2 = new double[width];
        if (rows.Count == 0) return new RowMoments(0, mean, m2);
        foreach (var r in rows)
            for (int j = 0; j < width; j++) mean[j] += r[j];
        for (int j = 0; j < width; j++) mean[j] /= rows.Count;
        foreach (var r in rows)
            for (int j = 0; j < width; j++) { double e = r[j] - mean[j]; m2[j] += e * e; }
        return new RowMoments(rows.Count, mean, m2);
    }

    /// <summary>
    /// The moments of both sets of rows together (Chan, Golub and LeVeque's pairwise update):
    /// δ = mean_b − mean_a, mean = mean_a + δ·n_b/n, M2 = M2_a + M2_b + δ²·n_a·n_b/n.
    /// </summary>
    public RowMoments Merge(RowMoments b)
    {
        if (b.Mean.Length != Mean.Length) throw new ArgumentException($"moments of width {b.Mean.Length} merged into width {Mean.Length}");
        if (b.Count == 0) return this;
        if (Count == 0) return b;
        double n = Count + b.Count;
        var mean = new double[Mean.Length];
        var m2 = new double[Mean.Length];
        for (int j = 0; j < mean.Length; j++)
        {
            double delta = b.Mean[j] - Mean[j];
            mean[j] = Mean[j] + delta * b.Count / n;
            m2[j] = M2[j] + b.M2[j] + delta * delta * Count * b.Count / n;
        }
        return new RowMoments(n, mean, m2);
    }
}

/// <summary>
/// UltraEdit's lifelong normalisation: running moments of the rows [k ‖ ∇v] (key and value
/// gradient side by side) of every edit so far, one set per (key width, value width) of the edited
/// matrices, as the reference keeps one RunningMeanStd per module shape. A row is standardised by
/// x̂ = (x − mean) / (std + ε), std = √(M2 / (n − 1 + ε)), ε = float32's machine epsilon (the reference's).
/// The reference adds m·var_unbiased(batch) to its M2 (m/(m−1) times the batch's own M2, for a
/// batch of m rows); these are the exact moments of all rows, as a two-pass computation gives them.
/// </summary>
public sealed class LifelongNormalizer
{
    private const double Eps = 1.1920928955078125e-07; // torch.finfo(torch.float32).eps
    private readonly Dictionary<(int Keys, int Values), RowMoments> _moments = new();

    /// <summary>The moments of one shape (zero rows if none were added).</summary>
    public RowMoments Moments(int keys, int values) =>
        _moments.TryGetValue((keys, values), out var m) ? m : new RowMoments(0, new double[keys + values], new double[keys + values]);

    /// <summary>Adds a set of rows' moments (one edit's contribution) to that shape's running moments.</summary>
    public void Add(int keys, int values, RowMoments contribution) => _moments[(keys, values)] = Moments(keys, values).Merge(contribution);

    /// <summary>row [keys + values] standardised in place with the shape's current moments.</summary>
    public void Normalise(int keys, int values, Span<double> row)
    {
        var m = Moments(keys, values);
        if (row.Length != keys + values) throw new ArgumentException($"a row of {row.Length} values normalised as [{keys} ‖ {values}]");
        for (int j = 0; j < row.Length; j++)
        {
            double std = Math.Sqrt(m.M2[j] / (m.Count - 1 + Eps));
            row[j] = (row[j] - m.Mean[j]) / (std + Eps);
        }
    }

    public void Clear() => _moments.Clear();

    /// <summary>Every shape's moments as named arrays: "normalizer.{keys}x{values}.n" [1], ".mean", ".m2" [keys + values].</summary>
    public IReadOnlyDictionary<string, double[]> Save()
    {
        var d = new Dictionary<string, double[]>();
        foreach (var ((k, v), m) in _moments)
        {
            d[$"normalizer.{k}x{v}.n"] = [m.Count];
            d[$"normalizer.{k}x{v}.mean"] = (double[])m.Mean.Clone();
            d[$"normalizer.{k}x{v}.m2"] = (double[])m.M2.Clone();
        }
        return d;
    }

    /// <summary>Moments <see cref="Save"/> wrote (or one edit's contribution in that form); what: where they came from, for errors.</summary>
    public static Dictionary<(int Keys, int Values), RowMoments> Read(IReadOnlyDictionary<string, double[]> saved, string what)
    {
        var shapes = new Dictionary<(int, int), RowMoments>();
        foreach (var name in saved.Keys)
        {
            var parts = name.Split('.');
            var dims = parts.Length == 3 && parts[0] == "normalizer" ? parts[1].Split('x') : [];
            if (dims.Length != 2 || !int.TryParse(dims[0], out int k) || !int.TryParse(dims[1], out int v) || k < 1 || v < 1 || parts[2] is not ("n" or "mean" or "m2"))
                throw new ArgumentException($"{what}: '{name}' is not an UltraEdit normaliser array (normalizer.KxV.n|mean|m2)");
            if (shapes.ContainsKey((k, v))) continue;
            double[] Get(string field, int length)
            {
                if (!saved.TryGetValue($"normalizer.{k}x{v}.{field}", out var a)) throw new ArgumentException($"{what}: normalizer.{k}x{v}.{field} is missing");
                if (a.Length != length) throw new ArgumentException($"{what}: normalizer.{k}x{v}.{field} has {a.Length} values, expected {length}");
                return (double[])a.Clone();
            }
            shapes[(k, v)] = new RowMoments(Get("n", 1)[0], Get("mean", k + v), Get("m2", k + v));
        }
        return shapes;
    }

    /// <summary>Replaces every shape's moments with saved ones (<see cref="Save"/>'s form).</summary>
    public void Restore(IReadOnlyDictionary<string, double[]> saved, string what)
    {
        var shapes = Read(saved, what);
        _moments.Clear();
        foreach (var (s, m) in shapes) _moments[s] = m;
    }
}
