using Palimpsest.Editing.Data;
using Palimpsest.Runtime;

namespace Palimpsest.Editing;

/// <summary>
/// C_l = E[k kᵀ] [f, f] of the MLP keys (input of block l's down-projection) over a corpus: every
/// token of every sentence, uncentred, divided by the token count, accumulated in float64 (ROME's
/// layer_stats "mom2"; ROME/MEMIT solve against it). Matrix is row-major and symmetric.
/// </summary>
public sealed record KeyStatistics(int Layer, int Dim, long TokenCount, double[] Matrix)
{
    /// <summary>
    /// One streamed pass over <paramref name="corpus"/> collecting several layers at once. Sentences
    /// longer than the model's context are split into context-sized pieces (each piece starts at
    /// position 0, as a new sequence). <paramref name="maxTokens"/> stops after that many tokens (the
    /// sentence that crosses it is cut). Progress reports the fraction of tokens done, in [0, 1].
    /// </summary>
    public static IReadOnlyDictionary<int, KeyStatistics> Compute(Transformer model, Corpus corpus, IReadOnlyList<int> layers,
        long? maxTokens = null, IProgress<double>? progress = null, CancellationToken cancel = default)
    {
        var c = model.Model.Config;
        if (layers.Count == 0) throw new ArgumentException("no layers requested");
        foreach (int l in layers)
            if (l < 0 || l >= c.Layers) throw new ArgumentException($"layer {l} outside [0, {c.Layers})");
        if (maxTokens is <= 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), "max tokens must be positive");
        var distinct = layers.Distinct().ToArray();
        var acc = distinct.ToDictionary(l => l, _ => new KeyStatisticsAccumulator(c.DFf));
        long budget = Math.Min(maxTokens ?? long.MaxValue, corpus.TokenCount), done = 0;
        if (budget == 0) throw new ArgumentException($"corpus '{corpus.Name}' has no tokens");
        var options = new ForwardOptions { CaptureKeysAt = distinct, StopAfterLayer = distinct.Max() };
        double[] host = [];
        var backend = model.Model.Backend;
        int reportEvery = Math.Max(1, corpus.Sentences.Count / 1000), n = 0;

        foreach (var sentence in corpus.Sentences)
        {
            for (int start = 0; start < sentence.Length && done < budget; start += c.MaxPositions)
            {
                cancel.ThrowIfCancellationRequested();
                int len = (int)Math.Min(Math.Min(c.MaxPositions, sentence.Length - start), budget - done);
                using var r = model.Forward(sentence.AsSpan(start, len), options);
                if (host.Length < len * c.DFf) host = new double[len * c.DFf];
                foreach (int l in distinct)
                {
                    var span = host.AsSpan(0, len * c.DFf);
                    backend.ToHost(r.MlpKeys[l], span);
                    acc[l].Add(span);
                }
                done += len;
            }
            if (++n % reportEvery == 0) progress?.Report((double)done / budget);
            if (done >= budget) break;
        }
        progress?.Report(1.0);
        return distinct.ToDictionary(l => l, l => new KeyStatistics(l, c.DFf, acc[l].Tokens, acc[l].Mean()));
    }
}
