using System.Globalization;

using Palimpsest.Editing;

namespace Palimpsest.Cli.Parity;

/// <summary>One compared quantity: relative difference ‖ours − official‖ / ‖official‖.</summary>
internal sealed record ParityRow(int? Request, int? Layer, string Quantity, double RelDiff);

/// <summary>
/// Our results against the official code's, quantity by quantity (<see cref="ParityTensors"/>'
/// names), as lines scripts can read: "request 3 layer 0: dW rel diff 2.1e-06  u 1.0e-07 ...".
/// ROME: per request, ΔW = u ⊗ right, u, k̄, v*, the right vector. MEMIT: per request and layer,
/// the request's term of ΔW (adj[:, i] ⊗ resid[:, i]), its key and its residual; per request z*;
/// per layer the whole ΔW of the batch.
/// </summary>
internal static class ParityComparison
{
    public static List<ParityRow> Compare(string method, ParityTensors ours, ParityTensors official, int[] layers, int n, int f, int d)
    {
        var rows = new List<ParityRow>();
        if (method == Editors.Rome.Name)
        {
            int layer = layers[0];
            for (int i = 0; i < n; i++)
            {
                string p = $"r{i}.";
                rows.Add(new(i, layer, "dW", Rel(Outer(ours[p + "u"], ours[p + "right"]), Outer(official[p + "u"], official[p + "right"]))));
                foreach (var (q, key) in new[] { ("u", "u"), ("k̄", "kbar"), ("v*", "vstar"), ("right", "right"), ("k_prompt", "kp") })
                    rows.Add(new(i, layer, q, Rel(ours[p + key], official[p + key])));
            }
            return rows;
        }
        for (int i = 0; i < n; i++) rows.Add(new(i, null, "z*", Rel(Row(ours["z"], i, d), Row(official["z"], i, d))));
        foreach (int layer in layers)
        {
            string p = $"l{layer}.";
            double[] oa = ours[p + "adj"], or = ours[p + "resid"], fa = official[p + "adj"], fr = official[p + "resid"];
            for (int i = 0; i < n; i++)
            {
                rows.Add(new(i, layer, "dW", Rel(Outer(Col(oa, i, f, n), Col(or, i, d, n)), Outer(Col(fa, i, f, n), Col(fr, i, d, n)))));
                rows.Add(new(i, layer, "key", Rel(Row(ours[p + "keys"], i, f), Row(official[p + "keys"], i, f))));
                rows.Add(new(i, layer, "resid", Rel(Col(or, i, d, n), Col(fr, i, d, n))));
            }
            rows.Add(new(null, layer, "dW", Rel(Product(oa, or, f, d, n), Product(fa, fr, f, d, n))));
        }
        return rows;
    }

    /// <summary>The lines: one per request and layer (and per request for z*, per layer for MEMIT's whole ΔW), then the probabilities.</summary>
    public static IEnumerable<string> Lines(List<ParityRow> rows, ParityTensors ours, ParityTensors official)
    {
        foreach (var g in rows.GroupBy(r => (r.Request, r.Layer)))
        {
            var (req, layer) = g.Key;
            string head = req is { } i ? (layer is { } l ? $"request {i} layer {l}" : $"request {i}") : $"batch layer {layer}";
            var first = g.First();
            string rest = string.Concat(g.Skip(1).Select(r => $"  {r.Quantity} {E(r.RelDiff)}"));
            yield return $"{head}: {first.Quantity} rel diff {E(first.RelDiff)}{rest}";
        }
        for (int i = 0; i < ours.ProbAfter.Length; i++)
            yield return string.Create(CultureInfo.InvariantCulture,
                $"request {i}: p(target) before {ours.ProbBefore[i]:0.0000} / {official.ProbBefore[i]:0.0000}, after {ours.ProbAfter[i]:0.0000} / {official.ProbAfter[i]:0.0000} (ours / official)");
    }

    public static string E(double x) => double.IsFinite(x) ? x.ToString("0.0e+00", CultureInfo.InvariantCulture) : "inf";

    public static double Rel(double[] ours, double[] official)
    {
        if (ours.Length != official.Length) throw new CliUsageException($"parity: shapes differ ({ours.Length} against {official.Length} values)");
        double num = 0, den = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            double e = ours[i] - official[i];
            num += e * e;
            den += official[i] * official[i];
        }
        return den > 0 ? Math.Sqrt(num / den) : num == 0 ? 0 : double.PositiveInfinity;
    }

    private static double[] Outer(double[] a, double[] b)
    {
        var m = new double[a.Length * b.Length];
        for (int i = 0; i < a.Length; i++)
            for (int j = 0; j < b.Length; j++) m[i * b.Length + j] = a[i] * b[j];
        return m;
    }

    // adj [f, n] · resid [d, n]ᵀ = [f, d]
    private static double[] Product(double[] adj, double[] resid, int f, int d, int n)
    {
        var m = new double[f * d];
        for (int a = 0; a < f; a++)
            for (int b = 0; b < d; b++)
            {
                double s = 0;
                for (int k = 0; k < n; k++) s += adj[a * n + k] * resid[b * n + k];
                m[a * d + b] = s;
            }
        return m;
    }

    private static double[] Row(double[] m, int i, int cols) => m.AsSpan(i * cols, cols).ToArray();

    private static double[] Col(double[] m, int j, int rows, int cols)
    {
        var c = new double[rows];
        for (int i = 0; i < rows; i++) c[i] = m[i * cols + j];
        return c;
    }
}
