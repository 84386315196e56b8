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
            if (next == stopId || output.Count == maxTokens) break;
            next = session.Step(next);
        }
        return output.ToArray();
    }

    /// <summary>The chosen id from logits [V]: argmax (ties: lowest id) or seeded top-k sampling.</summary>
    public static int Pick(ReadOnlySpan<double> logits, Sampling s, Random rng)
    {
        if (s.TopK <= 0) return ArgMax(logits);
        int k = Math.Min(s.TopK, logits.Length);
        var idx = new int[logits.Length];
        for (int i = 0; i < idx.Length; i++) idx[i] = i;
        var copy = logits.ToArray();
        // Stable order: by logit descending, then id ascending, so a seed always means the same draw.
        Array.Sort(idx, (a, b) => copy[b].CompareTo(copy[a]) is var cmp && cmp != 0 ? cmp : a.CompareTo(b));
        double max = copy[idx[0]], z = 0;
        var w = new double[k];
        for (int j = 0; j < k; j++) { w[j] = Math.Exp((copy[idx[j]] - max) / s.Temperature); z += w[j]; }
        double u = rng.NextDouble() * z;
        for (int j = 0; j < k; j++) { u -= w[j]; if (u <= 0) return idx[j]; }
        return idx[k - 1];
    }

    public static int ArgMax(ReadOnlySpan<double> v)
    {
        int best = 0;
        for (int i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
