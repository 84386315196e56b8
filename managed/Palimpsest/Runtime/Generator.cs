namespace Palimpsest.Runtime;

/// <summary>How the next token is chosen.</summary>
public sealed record Sampling
{
    /// <summary>0 = greedy (argmax). K > 0: sample from the K most likely tokens (renormalised).</summary>
    public int TopK { get; init; }
    public double Temperature { get; init; } = 1.0;
    /// <summary>Seed of the sampler: the same seed gives the same text.</summary>
    public int Seed { get; init; }
    public static Sampling Greedy { get; } = new();
}

/// <summary>
/// Token-by-token generation with the KV cache: the prompt is run once, then one token per step.
/// </summary>
public sealed class Generator
{
    private readonly Transformer _tf;

    public Generator(Transformer transformer) { _tf = transformer; }

    /// <summary>
    /// Generates up to maxTokens tokens after prompt (stops early at stopId). Returns the new ids only.
    /// Throws ArgumentException when prompt + maxTokens exceeds the context.
    /// </summary>
    public int[] Generate(ReadOnlySpan<int> prompt, int maxTokens, Sampling? sampling = null, int? stopId = null)
        => Generate(prompt, maxTokens, sampling, stopId is int s ? [s] : []);

    /// <summary>As above, stopping early at any of <paramref name="stopIds"/> (a tokenizer's <see cref="Tokenization.ITextTokenizer.StopIds"/>).</summary>
    public int[] Generate(ReadOnlySpan<int> prompt, int maxTokens, Sampling? sampling, IReadOnlyCollection<int> stopIds)
    {
        var s = sampling ?? Sampling.Greedy;
        var c = _tf.Model.Config;
        if (prompt.Length == 0) throw new ArgumentException("empty prompt");
        if (maxTokens < 0) throw new ArgumentOutOfRangeException(nameof(maxTokens), "max tokens must be >= 0");
        if (prompt.Length + maxTokens > c.MaxPositions)
            throw new ArgumentException($"prompt ({prompt.Length} tokens) + {maxTokens} new tokens is longer than the model's context ({c.MaxPositions})");
        if (maxTokens == 0) return [];
        var output = new List<int>(maxTokens);
        using var session = new DecodeSession(_tf, prompt.Length + maxTokens, s);
        int next = session.Prefill(prompt);
        while (true)
        {
            output.Add(next);
            if (stopIds.Contains(next) || output.Count == maxTokens) break;
            next = session.Step(next);
        }
        return output.ToArray();
    }

    /// <summary>
    /// The greedy continuation of <paramref name="prompt"/> as text: up to <paramref name="maxTokens"/>
    /// tokens (fewer where the context ends), stopping at EOS, which is not included. "" when the
    /// prompt fills the context.
    /// </summary>
    public string GreedyText(Tokenization.ITextTokenizer tok, string prompt, int maxTokens)
    {
        var ids = tok.EncodePrompt(prompt);
        int n = Math.Min(maxTokens, _tf.Model.Config.MaxPositions - ids.Length);
        if (n <= 0) return "";
        var stops = tok.StopIds;
        return tok.Decode(Generate(ids, n, null, stops).Where(i => !stops.Contains(i)).ToArray());
    }

    /// <summary>The chosen id from logits [V]: argmax (ties: lowest id) or seeded top-k sampling.</summary>
    public static int Pick(ReadOnlySpan<double> logits, Sampling s, Random rng)
    {
        int k = s.TopK <= 0 ? 0 : Math.Min(s.TopK, logits.Length);
        return Pick(logits, s, rng, new int[k], new double[k]);
    }

    /// <summary>
    /// <see cref="Pick(ReadOnlySpan{double}, Sampling, Random)"/> on the caller's scratch (top, weights:
    /// at least min(TopK, V) each), so that a decode step allocates nothing. The k best ids are kept
    /// in a heap instead of sorting all V; their order (logit descending, then id ascending) is a total
    /// order, so the k ids, their order and every draw are those of a full sort.
    /// </summary>
    public static int Pick(ReadOnlySpan<double> logits, Sampling s, Random rng, Span<int> top, Span<double> weights)
    {
        if (s.TopK <= 0) return ArgMax(logits);
        int k = Math.Min(s.TopK, logits.Length);
        if (top.Length < k || weights.Length < k) throw new ArgumentException($"top-{k} sampling needs scratch of {k} ids and {k} weights");
        // idx [k]: a heap of the k best ids so far, the worst of them at the root
        var idx = top[..k];
        for (int i = 0; i < k; i++) { idx[i] = i; SiftUp(logits, idx, i); }
        for (int i = k; i < logits.Length; i++)
            if (Before(logits, i, idx[0])) { idx[0] = i; SiftDown(logits, idx, 0, k); }
        // heap sort: the worst left moves to the end each time, so idx ends best first
        for (int n = k - 1; n > 0; n--) { (idx[0], idx[n]) = (idx[n], idx[0]); SiftDown(logits, idx, 0, n); }
        double max = logits[idx[0]], z = 0;
        var w = weights[..k];
        for (int j = 0; j < k; j++) { w[j] = Math.Exp((logits[idx[j]] - max) / s.Temperature); z += w[j]; }
        double u = rng.NextDouble() * z;
        for (int j = 0; j < k; j++) { u -= w[j]; if (u <= 0) return idx[j]; }
        return idx[k - 1];
    }

    // id a comes before id b: a higher logit (double.CompareTo: NaN lowest), then the lower id
    private static bool Before(ReadOnlySpan<double> v, int a, int b)
    {
        int c = v[a].CompareTo(v[b]);
        return c > 0 || (c == 0 && a < b);
    }

    // heap [n] with every parent after its children: move h[i] up / down to its place
    private static void SiftUp(ReadOnlySpan<double> v, Span<int> h, int i)
    {
        while (i > 0)
        {
            int p = (i - 1) / 2;
            if (!Before(v, h[p], h[i])) return;
            (h[p], h[i]) = (h[i], h[p]);
            i = p;
        }
    }

    private static void SiftDown(ReadOnlySpan<double> v, Span<int> h, int i, int n)
    {
        while (true)
        {
            int c = 2 * i + 1; // the later of the two children
            if (c >= n) return;
            if (c + 1 < n && Before(v, h[c], h[c + 1])) c++;
            if (!Before(v, h[i], h[c])) return;
            (h[i], h[c]) = (h[c], h[i]);
            i = c;
        }
    }

    public static int ArgMax(ReadOnlySpan<double> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
