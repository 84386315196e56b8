using Palimpsest.Models;
using Palimpsest.Runtime;

namespace Palimpsest.Tests.Runtime;

public class DecodeTests
{
    public static TheoryData<string> Configs() => new(SmallConfigs.Names);

    [Theory, MemberData(nameof(Configs))]
    public void Kv_cache_decode_equals_the_full_forward(string name)
    {
        var c = SmallConfigs.Get(name);
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 21, 0.3), b);
        var tf = new Transformer(model);
        var rng = new Random(1);
        var ids = Enumerable.Range(0, 11).Select(_ => rng.Next(c.Vocab)).ToArray();
        using var full = tf.Forward(ids);
        var expected = new double[full.Logits.Length]; b.ToHost(full.Logits, expected);

        // prompt of 4 in one call, then 3 + 1 + 1 + 1 + 1 tokens through the cache
        using var cache = new KvCache(model, 16);
        var got = new List<double>();
        int at = 0;
        foreach (int n in new[] { 4, 3, 1, 1, 1, 1 })
        {
            using var r = tf.Forward(ids.AsSpan(at, n), null, cache);
            var h = new double[r.Logits.Length]; b.ToHost(r.Logits, h);
            got.AddRange(h);
            at += n;
        }
        Assert.Equal(ids.Length, cache.Length);
        Num.AssertClose(got.ToArray(), expected, 1e-12, $"{name} cached logits");

        // rewinding to 7 tokens and replaying the rest gives the same last logits again (a sliding layer's
        // rows reach back only so far: those configs rewind to the floor; SlidingKvCacheTests covers the rest)
        int back = Math.Max(7, cache.TruncateFloor);
        cache.Truncate(back);
        using (var again = tf.Forward(ids.AsSpan(back), null, cache))
        {
            var h = new double[again.Logits.Length]; b.ToHost(again.Logits, h);
            Num.AssertClose(h, expected.AsSpan(back * c.Vocab), 1e-12, $"{name} after truncation");
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(cache.Length + 1));
    }

    [Fact]
    public void Logits_from_a_row_equal_those_rows_of_the_full_logits()
    {
        var c = SmallConfigs.Get("gpt2");
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 2), b);
        var tf = new Transformer(model);
        int[] ids = [1, 5, 9, 2, 7];
        using var full = tf.Forward(ids);
        using var last = tf.Forward(ids, new ForwardOptions { LogitsFrom = -2 });
        var f = new double[full.Logits.Length]; b.ToHost(full.Logits, f);
        var l = new double[last.Logits.Length]; b.ToHost(last.Logits, l);
        Assert.Equal([2, c.Vocab], last.Logits.Shape);
        Num.AssertClose(l, f.AsSpan(3 * c.Vocab), 1e-15, "last two rows");
    }

    [Fact]
    public void Greedy_generation_follows_the_argmax_of_full_forwards()
    {
        var c = SmallConfigs.Get("llama-gqa");
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 4, 0.5), b);
        var tf = new Transformer(model);
        int[] prompt = [3, 1, 4, 1, 5];
        var gen = new Generator(tf).Generate(prompt, 6);
        var seq = prompt.ToList();
        foreach (var tok in gen)
        {
            using var r = tf.Forward(seq.ToArray(), new ForwardOptions { LogitsFrom = -1 });
            var h = new double[c.Vocab]; b.ToHost(r.Logits, h);
            Assert.Equal(Generator.ArgMax(h), tok);
            seq.Add(tok);
        }
    }

    [Fact]
    public void Top_k_sampling_is_reproducible_per_seed_and_stays_in_the_top_k()
    {
        var c = SmallConfigs.Get("gpt2");
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 8, 0.5), b);
        var g = new Generator(new Transformer(model));
        int[] prompt = [2, 7, 1];
        var a1 = g.Generate(prompt, 12, new Sampling { TopK = 5, Seed = 42 });
        var a2 = g.Generate(prompt, 12, new Sampling { TopK = 5, Seed = 42 });
        Assert.Equal(a1, a2);
        var others = Enumerable.Range(0, 8).Select(s => g.Generate(prompt, 12, new Sampling { TopK = 5, Seed = s })).ToList();
        Assert.Contains(others, o => !o.SequenceEqual(a1));
        Assert.Equal(g.Generate(prompt, 12), g.Generate(prompt, 12, new Sampling { TopK = 1, Seed = 3 }));
        // every sampled token is among the 5 most likely at its step
        var tf = new Transformer(model);
        var seq = prompt.ToList();
        foreach (var tok in a1)
        {
            using var r = tf.Forward(seq.ToArray(), new ForwardOptions { LogitsFrom = -1 });
            var h = new double[c.Vocab]; b.ToHost(r.Logits, h);
            var top5 = Enumerable.Range(0, c.Vocab).OrderByDescending(i => h[i]).Take(5);
            Assert.Contains(tok, top5);
            seq.Add(tok);
        }
    }

    [Fact]
    public void Generation_longer_than_the_context_is_refused()
    {
        var c = SmallConfigs.Get("gpt2");
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 8), b);
        var e = Assert.Throws<ArgumentException>(() => new Generator(new Transformer(model)).Generate([1, 2, 3], c.MaxPositions));
        Assert.Contains("context", e.Message);
    }

    [Fact]
    public void Stopping_after_a_layer_returns_the_same_keys_and_no_logits()
    {
        var c = SmallConfigs.Get("neox-sequential");
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 3), b);
        var tf = new Transformer(model);
        int[] ids = [4, 8, 15, 16, 23, 42 % c.Vocab];
        using var full = tf.Forward(ids, new ForwardOptions { CaptureKeysAt = [0] });
        using var part = tf.Forward(ids, new ForwardOptions { CaptureKeysAt = [0], StopAfterLayer = 0 });
        var a = new double[full.MlpKeys[0].Length]; b.ToHost(full.MlpKeys[0], a);
        var p = new double[part.MlpKeys[0].Length]; b.ToHost(part.MlpKeys[0], p);
        Assert.Equal(a, p);
        Assert.Throws<InvalidOperationException>(() => part.Logits);
        Assert.Throws<ArgumentException>(() => tf.Forward(ids, new ForwardOptions { StopAfterLayer = c.Layers }));
    }
}
