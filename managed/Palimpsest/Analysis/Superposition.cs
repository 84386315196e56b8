using Palimpsest.Editing;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Analysis;

/// <summary>
/// One layer of a superposition analysis: the matrices and the distributions of their off-diagonal
/// entries (n(n − 1) values each), plus the angles (degrees) of the whitened and raw cosines.
/// </summary>
public sealed record SuperpositionLayer(int Layer, SuperpositionMatrices Matrices,
    DistributionSummary P, DistributionSummary Q, DistributionSummary WhitenedCosine, DistributionSummary RawCosine,
    DistributionSummary WhitenedAngle, DistributionSummary RawAngle);

/// <summary>A superposition analysis of one model: the facts used and one entry per layer, in layer order.</summary>
public sealed record SuperpositionResult(IReadOnlyList<EditRequest> Facts, int KeyDim, IReadOnlyList<SuperpositionLayer> Layers);

/// <summary>
/// "Knowledge in Superposition" (Hu et al. 2024; ChenhuiHu/knowledge_in_superposition): are the
/// keys of different facts orthogonal once whitened by the key statistics C? If they were, a
/// ROME edit of one fact would leave every other fact's output untouched (P off-diagonal = 0); the
/// paper finds a zero-mean, heavy-tailed (kurtosis > 0) distribution instead.
/// The key of a fact is the MLP key (input of the down-projection) at the subject's last token of
/// the bare rewriting prompt (context template "{}", no prefixes): the k ROME edits from.
/// </summary>
public static class Superposition
{
    /// <summary>
    /// Keys of every fact at every layer in <paramref name="layers"/>: layer -> [n, f] row-major,
    /// row i = fact i's key. One forward per fact captures all layers (stopping after the highest),
    /// and gives the same numbers as <see cref="FactProbes.KeyAt"/> on the fact's Prompt.
    /// </summary>
    public static IReadOnlyDictionary<int, double[]> Keys(Transformer tf, ITextTokenizer tok, IReadOnlyList<EditRequest> facts, IReadOnlyList<int> layers)
    {
        var c = tf.Model.Config;
        if (layers.Count == 0) throw new ArgumentException("no layers requested");
        foreach (int l in layers)
            if (l < 0 || l >= c.Layers) throw new ArgumentException($"layer {l} outside [0, {c.Layers})");
        var distinct = layers.Distinct().Order().ToArray();
        int f = c.DFf, n = facts.Count;
        var keys = distinct.ToDictionary(l => l, _ => new double[(long)n * f]);
        var probes = new FactProbes(tok);
        var options = new ForwardOptions { CaptureKeysAt = distinct, StopAfterLayer = distinct[^1] };
        double[] host = [];
        for (int i = 0; i < n; i++)
        {
            var (ids, idx) = probes.Encode(facts[i].Prompt, facts[i].Subject);
            using var r = tf.Forward(ids, options);
            if (host.Length < ids.Length * f) host = new double[ids.Length * f];
            foreach (int l in distinct)
            {
                var span = host.AsSpan(0, ids.Length * f);
                tf.Model.Backend.ToHost(r.MlpKeys[l], span);
                span.Slice(idx * f, f).CopyTo(keys[l].AsSpan(i * f, f));
            }
        }
        return keys;
    }

    /// <summary>
    /// The analysis over the layers of <paramref name="stats"/> (C per layer, computed over a corpus
    /// by KeyStatistics), for facts [n ≥ 2].
    /// </summary>
    public static SuperpositionResult Analyze(Transformer tf, ITextTokenizer tok, IReadOnlyList<EditRequest> facts,
        IReadOnlyDictionary<int, KeyStatistics> stats, int bins = Distribution.DefaultBins, int kdePoints = Distribution.DefaultKdePoints)
    {
        if (facts.Count < 2) throw new ArgumentException($"superposition needs at least 2 facts (got {facts.Count}): the statistics are over pairs");
        int f = tf.Model.Config.DFf;
        var layers = stats.Keys.Order().ToArray();
        foreach (int l in layers)
            if (stats[l].Dim != f) throw new ArgumentException($"key statistics of layer {l} are {stats[l].Dim}-dimensional; the model's keys have {f}");
        var keys = Keys(tf, tok, facts, layers);
        var result = layers.Select(l => AnalyzeLayer(l, keys[l], facts.Count, new InverseSecondMoment(stats[l].Matrix, f), bins, kdePoints)).ToList();
        return new SuperpositionResult(facts, f, result);
    }

    /// <summary>One layer from keys [n, f] and C⁻¹: matrices, then the summaries of their off-diagonal entries.</summary>
    public static SuperpositionLayer AnalyzeLayer(int layer, double[] keys, int n, InverseSecondMoment cinv,
        int bins = Distribution.DefaultBins, int kdePoints = Distribution.DefaultKdePoints)
    {
        var m = SuperpositionMatrices.Compute(keys, n, cinv);
        DistributionSummary S(double[] x) => Distribution.Summarize(x, bins, kdePoints);
        var wc = SuperpositionMatrices.OffDiagonal(m.WhitenedCosine, n);
        var rc = SuperpositionMatrices.OffDiagonal(m.RawCosine, n);
        return new SuperpositionLayer(layer, m,
            S(SuperpositionMatrices.OffDiagonal(m.P, n)), S(SuperpositionMatrices.OffDiagonal(m.Q, n)), S(wc), S(rc),
            S(SuperpositionMatrices.AnglesDegrees(wc)), S(SuperpositionMatrices.AnglesDegrees(rc)));
    }
}
