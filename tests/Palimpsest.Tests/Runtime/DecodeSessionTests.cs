using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;

namespace Palimpsest.Tests.Runtime;

/// <summary>What a session reuses (scratch slots, the sampler's buffers) does not change what it decodes.</summary>
public class DecodeSessionTests
{
    // The top-k draw as it was written before the scratch overload: every id sorted by logit
    // descending, then id ascending.
    private static int SortedPick(double[] logits, Sampling s, Random rng)
    {
        int k = Math.Min(s.TopK, logits.Length);
        var idx = Enumerable.Range(0, logits.Length).ToArray();
        Array.Sort(idx, (a, b) => logits[b].CompareTo(logits[a]) is var cmp && cmp != 0 ? cmp : a.CompareTo(b));
        double max = logits[idx[0]], z = 0;
        var w = new double[k];
        for (int j = 0; j < k; j++) { w[j] = Math.Exp((logits[idx[j]] - max) / s.Temperature); z += w[j]; }
        double u = rng.NextDouble() * z;
        for (int j = 0; j < k; j++) { u -= w[j]; if (u <= 0) return idx[j]; }
        return idx[k - 1];
    }

    [Fact]
    public void Top_k_on_scratch_draws_what_a_full_sort_draws()
    {
        var data = new Random(5);
        foreach (int V in new[] { 1, 2, 7, 37, 300 })
            foreach (int topK in new[] { 1, 2, 5, 40, V, V + 3 })
                for (int trial = 0; trial < 20; trial++)
                {
                    // few distinct values: many ties, which the id breaks
                    var logits = Enumerable.Range(0, V).Select(_ => data.Next(6) * 0.75 - 2).ToArray();
                    if (trial % 5 == 0) logits[data.Next(V)] = double.NaN; // CompareTo ranks NaN lowest
                    var s = new Sampling { TopK = topK, Seed = trial, Temperature = trial % 2 == 0 ? 1.0 : 0.6 };
                    int k = Math.Min(topK, V);
                    var a = new Random(trial); var b = new Random(trial);
                    var top = new int[k]; var w = new double[k];
                    for (int draw = 0; draw < 5; draw++)
                        Assert.Equal(SortedPick(logits, s, a), Generator.Pick(logits, s, b, top, w));
                }
    }

    private static int[] Decode(DecodeSession s, int[] prompt, int n)
    {
        var got = new List<int> { s.Prefill(prompt) };
        while (got.Count < n) got.Add(s.Step(got[^1]));
        return got.ToArray();
    }

    [Fact]
    public void Interleaved_sessions_on_one_transformer_decode_as_they_do_alone()
    {
        // prefills of different lengths and steps take turns on one transformer's scratch slots
        var c = SmallConfigs.Get("gptj");
        using var b = new SimdBackend(threads: 2);
        using var model = Model.FromHost(c, RandomWeights.Create(c, 6, 0.5), b);
        using var tf = new Transformer(model);
        int[] p1 = [1, 2, 3, 4, 5, 6], p2 = [7, 8];
        var sampling = new Sampling { TopK = 4, Seed = 11 };
        int[] alone1, alone2;
        using (var s = new DecodeSession(tf, 16, sampling)) alone1 = Decode(s, p1, 8);
        using (var s = new DecodeSession(tf, 16)) alone2 = Decode(s, p2, 8);

        using var s1 = new DecodeSession(tf, 16, sampling);
        using var s2 = new DecodeSession(tf, 16);
        var got1 = new List<int> { s1.Prefill(p1) };
        var got2 = new List<int> { s2.Prefill(p2) };
        while (got1.Count < 8)
        {
            got1.Add(s1.Step(got1[^1]));
            got2.Add(s2.Step(got2[^1]));
        }
        Assert.Equal(alone1, got1);
        Assert.Equal(alone2, got2);
    }

    [Fact]
    public void Sessions_on_different_threads_decode_as_they_do_alone()
    {
        // one backend, model and transformer per thread, as a server runs them
        string[] names = ["gpt2", "gptj", "llama-gqa", "gpt2"];
        int[] Run(int i)
        {
            var c = SmallConfigs.Get(names[i]);
            using var b = new SimdBackend(threads: 2);
            using var model = Model.FromHost(c, RandomWeights.Create(c, 10 + i, 0.5), b);
            using var tf = new Transformer(model);
            using var s = new DecodeSession(tf, c.MaxPositions, new Sampling { TopK = i, Seed = i });
            return Decode(s, [1 + i, 2, 3], c.MaxPositions - 3);
        }
        var alone = Enumerable.Range(0, names.Length).Select(Run).ToArray();
        var together = new int[names.Length][];
        var threads = Enumerable.Range(0, names.Length).Select(i => new Thread(() => together[i] = Run(i))).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        for (int i = 0; i < names.Length; i++) Assert.Equal(alone[i], together[i]);
    }
}
