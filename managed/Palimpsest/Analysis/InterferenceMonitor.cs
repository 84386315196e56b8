using Palimpsest.Editing;
using Palimpsest.Runtime;

namespace Palimpsest.Analysis;

/// <summary>A stored fact whose key the monitor watches: a name to report and its key k [f] at one layer.</summary>
public sealed record BankKey(string Name, double[] Key);

/// <summary>How much one planned edit moves one stored fact's MLP output: ||ΔW k|| and P = (left · k) / (left · k_e) (rank one).</summary>
public sealed record FactAtRisk(string Name, double Drift, double P);

/// <summary>
/// The interference monitor's prediction for one planned edit at one layer: the edit's own change
/// ||ΔW k_e|| (what it means to move), and over the bank of stored keys the drift ||ΔW k_j|| of each
/// (max, mean) and the facts it moves most. Knowledge in Superposition's interference term, computed
/// exactly from the planned ΔW: after the edit, fact j's MLP output at that layer is W k_j + ΔW k_j.
/// Drifts holds ||ΔW k_j|| for every bank key, in the bank's order.
/// </summary>
public sealed record InterferenceForecast(int Layer, double OwnChange, int BankSize, double MaxDrift, double MeanDrift, IReadOnlyList<FactAtRisk> MostAtRisk,
    IReadOnlyList<double> Drifts)
{
    /// <summary>The largest drift as a fraction of the edit's own change (0: harmless; near 1: another fact moves as much as the edited one).</summary>
    public double MaxRelative => OwnChange > 0 ? MaxDrift / OwnChange : 0;
}

/// <summary>
/// Predicts an edit's damage before it is applied (our own addition to the papers: the
/// superposition analysis turned into a guard). The bank holds the keys of facts to protect (known
/// facts, earlier edits) at the edited layer, read at the same fact token as the editor reads.
/// </summary>
public static class InterferenceMonitor
{
    /// <summary>
    /// Keys [f] of `layer` for each fact's prompt (with "{}" for the subject) at the editor's fact
    /// token, read in packed forwards; names are "subject: prompt".
    /// </summary>
    public static IReadOnlyList<BankKey> Bank(Transformer tf, FactProbes probes, IReadOnlyList<EditRequest> facts, int layer)
    {
        var keys = new List<BankKey>(facts.Count);
        // one subject per KeysAt call: it packs the prompts of one subject; group to share forwards
        foreach (var group in facts.GroupBy(f => f.Subject))
        {
            var list = group.ToArray();
            var k = probes.KeysAt(tf, list.Select(f => f.Prompt).ToArray(), group.Key, layer);
            for (int i = 0; i < list.Length; i++) keys.Add(new BankKey($"{list[i].Subject}: {list[i].Prompt}", k[i]));
        }
        return keys;
    }

    /// <summary>
    /// The forecast of a planned delta (ΔW = Σ_r Left[r] ⊗ Right[r]) for the edited fact's key
    /// editKey [f] and the bank; top: how many facts at risk to list.
    /// </summary>
    public static InterferenceForecast Forecast(WeightDelta delta, double[] editKey, IReadOnlyList<BankKey> bank, int top = 5)
    {
        if (editKey.Length != delta.KeyDim) throw new ArgumentException($"edit key has {editKey.Length} values, the delta's key space {delta.KeyDim}");
        double own = Norm(Apply(delta, editKey));
        double lk = delta.Rank == 1 ? Dot(delta.Left, editKey) : double.NaN;
        var risks = new List<FactAtRisk>(bank.Count);
        foreach (var b in bank)
        {
            if (b.Key.Length != delta.KeyDim) throw new ArgumentException($"bank key '{b.Name}' has {b.Key.Length} values, the delta's key space {delta.KeyDim}");
            double p = delta.Rank == 1 && lk != 0 ? Dot(delta.Left, b.Key) / lk : double.NaN;
            risks.Add(new FactAtRisk(b.Name, Norm(Apply(delta, b.Key)), p));
        }
        double max = risks.Count == 0 ? 0 : risks.Max(r => r.Drift), mean = risks.Count == 0 ? 0 : risks.Average(r => r.Drift);
        return new InterferenceForecast(delta.Layer, own, bank.Count, max, mean,
            risks.OrderByDescending(r => r.Drift).ThenBy(r => r.Name, StringComparer.Ordinal).Take(top).ToArray(),
            risks.Select(r => r.Drift).ToArray());
    }

    /// <summary>ΔW k [d] = Σ_r (Left[r] · k) Right[r] for k [f].</summary>
    public static double[] Apply(WeightDelta delta, ReadOnlySpan<double> k)
    {
        int f = delta.KeyDim, d = delta.ValueDim;
        var v = new double[d];
        for (int r = 0; r < delta.Rank; r++)
        {
            double a = 0;
            for (int i = 0; i < f; i++) a += delta.Left[r * f + i] * k[i];
            for (int j = 0; j < d; j++) v[j] += a * delta.Right[r * d + j];
        }
        return v;
    }

    private static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double s = 0;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    private static double Norm(double[] v) => Math.Sqrt(Dot(v, v));
}
