using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Evaluation;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Runtime;

/// <summary>
/// The KV cache's sliding layers (KvCache.Sliding.cs): they keep O(window) rows whatever the capacity, and
/// decoding through them gives the logits of a cache that keeps every row bit for bit, on both CPU backends,
/// Mistral-style (every layer slides) and Qwen2-style (a full layer beside sliding ones), after prompts shorter
/// and longer than the window and forwards of any number of tokens. The window is 5 (not a power of two) and
/// the sequences run past 4 windows, so a row put in the wrong place or one key kept too few shows.
/// </summary>
public class SlidingKvCacheTests
{
    private const int Window = 5, N = 4 * Window + 3;

    private static ModelConfig Config(string name) => SmallConfigs.Get(name) with { SlidingWindow = Window, MaxPositions = 64 };

    private static double[] Host(IBackend b, Tensor t) { var h = new double[t.Length]; b.ToHost(t, h); return h; }

    // The tokens of each forward, summing to N: a short prompt then single steps; a prompt longer than the
    // sliding rows; forwards of several tokens, some more than the slack (their keys are gathered).
    private static readonly Dictionary<string, int[]> Plans = new()
    {
        ["decode"] = [2, .. Enumerable.Repeat(1, N - 2)],
        ["long-prompt"] = [2 * Window + 1, .. Enumerable.Repeat(1, N - 2 * Window - 1)],
        ["chunks"] = [3, 1, 4, 1, 1, 6, 2, 1, 3, 1],
    };

    public static TheoryData<string, string, string, int> Cases()
    {
        var data = new TheoryData<string, string, string, int>();
        foreach (var name in new[] { "mistral-window", "qwen2-window" })
            foreach (var backend in TestBackends.Cpu)
                foreach (var plan in Plans.Keys)
                    foreach (int slack in new[] { 0, 3 }) // 0: the default, max(1, 5 / 4) = 1
                        data.Add(name, backend, plan, slack);
        return data;
    }

    // ids [N] through the cache, forward by forward as the plan says -> every row's logits [N, V]
    private static double[] Decode(Transformer tf, KvCache cache, int[] ids, int[] plan)
    {
        var got = new List<double>();
        int at = 0;
        foreach (int n in plan)
        {
            using var r = tf.Forward(ids.AsSpan(at, n), null, cache);
            got.AddRange(Host(tf.Model.Backend, r.Logits));
            at += n;
        }
        Assert.Equal(ids.Length, at);
        return got.ToArray();
    }

    // got and want [rows, V]
    private static void AssertBitEqual(double[] got, double[] want, string what, int rows = N)
    {
        Assert.Equal(want.Length, got.Length);
        for (int i = 0; i < want.Length; i++)
            if (BitConverter.DoubleToInt64Bits(got[i]) != BitConverter.DoubleToInt64Bits(want[i]))
                Assert.Fail($"{what}: element {i} (row {i / (want.Length / rows)}) is {got[i]:R}, keeping every row gives {want[i]:R}");
    }

    [Theory, MemberData(nameof(Cases))]
    public void Decoding_through_the_sliding_rows_is_bit_identical_to_keeping_every_row(string name, string backend, string plan, int slack)
    {
        var c = Config(name);
        var rng = new Random(5);
        var ids = Enumerable.Range(0, N).Select(_ => rng.Next(c.Vocab)).ToArray();
        using var b = TestBackends.Create(backend);
        using var model = Model.FromHost(c, RandomWeights.Create(c, 17, 0.3), b);
        using var tf = new Transformer(model);
        using var every = new KvCache(model, N, slack: N);
        using var sliding = new KvCache(model, N, slack == 0 ? null : slack);
        for (int l = 0; l < c.Layers; l++)
        {
            Assert.Equal(N, every.Rows(l));
            Assert.Equal(c.AttentionWindow(l) > 0 ? Window - 1 + Math.Max(slack, 1) : N, sliding.Rows(l));
        }
        var want = Decode(tf, every, ids, Plans[plan]);
        var got = Decode(tf, sliding, ids, Plans[plan]);
        AssertBitEqual(got, want, $"{name} {b.Name} {plan} slack {slack}");
        // and both are the full forward's (to rounding on float32: the forward of all N multiplies in other blocks)
        using var full = tf.Forward(ids);
        Num.AssertClose(got, Host(b, full.Logits), backend == "f64" ? 1e-12 : 1e-4, $"{name} {b.Name} {plan} against the full forward");
    }

    /// <summary>
    /// The allocated rows: capacity on a full layer, W − 1 + slack on a sliding one (default slack max(1, W / 4)), at a
    /// capacity of 64 or the whole context of 4096 alike; slack ≥ capacity keeps every row.
    /// </summary>
    [Theory, InlineData("mistral-window"), InlineData("qwen2-window")]
    public void Sliding_layers_allocate_window_rows_whatever_the_capacity(string name)
    {
        const int w = 8, context = 4096;
        var c = SmallConfigs.Get(name) with { SlidingWindow = w, MaxPositions = context };
        using var b = new SimdBackend(threads: 1);
        using var model = Model.FromHost(c, RandomWeights.Create(c, 1, 0.3), b);
        foreach (var (capacity, slack, slidingRows) in new (int, int?, int)[] { (64, null, w - 1 + 2), (context, null, w - 1 + 2), (context, 5, w - 1 + 5), (64, 64, 64) })
        {
            using var cache = new KvCache(model, capacity, slack);
            long rows = 0;
            for (int l = 0; l < c.Layers; l++)
            {
                Assert.Equal(c.AttentionWindow(l) > 0 ? slidingRows : capacity, cache.Rows(l));
                rows += cache.Rows(l);
            }
            Assert.Equal(2 * rows * c.KvDim * sizeof(float), cache.Bytes);
        }
    }

    /// <summary>
    /// A prompt longer than the sliding rows leaves only its last rows: Truncate refuses a length whose keys are gone
    /// (naming the shortest it accepts) and leaves the cache as it was; after a forward of at most slack tokens it
    /// rewinds to where that forward began, and replaying gives the same logits; Reset empties it.
    /// </summary>
    [Fact]
    public void Truncate_rewinds_as_far_as_the_sliding_rows_reach()
    {
        var c = Config("mistral-window");
        using var b = new ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 3, 0.3), b);
        using var tf = new Transformer(model);
        int[] ids = [1, 5, 9, 2, 7, 3, 8, 4, 6, 10, 12, 11];
        using var cache = new KvCache(model, 16, slack: 3); // sliding rows: 4 + 3 = 7
        double[] Run(int from, int n) { using var r = tf.Forward(ids.AsSpan(from, n), null, cache); return Host(b, r.Logits); }

        var prompt = Run(0, 9);                   // keeps positions 2..8: position 6 is the first whose 4 earlier keys are there
        Assert.Equal(6, cache.TruncateFloor);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => cache.Truncate(5));
        Assert.Contains("the shortest length it can keep now is 6", e.Message);
        Assert.Equal(9, cache.Length);
        var tail = Run(9, 3);                     // 3 tokens ≤ slack: positions 5..8 move to the front, 9..11 follow
        Assert.Equal(9, cache.TruncateFloor);
        cache.Truncate(9);
        AssertBitEqual(Run(9, 3), tail, "the 3 tokens after rewinding to 9");
        cache.Reset();
        Assert.Equal((0, 0), (cache.Length, cache.TruncateFloor));
        AssertBitEqual(Run(0, 9), prompt, "the prompt after Reset");
        Run(9, 3);                                // rows dropped again (floor 9); position 0 reads no keys, so 0 is always a length it can keep
        cache.Truncate(0);
        Assert.Equal((0, 0), (cache.Length, cache.TruncateFloor));
        AssertBitEqual(Run(0, 9), prompt, "the prompt after Truncate(0)");
    }

    /// <summary>
    /// A forward that fails part way (here an adaptor that throws in block 1, after the attention of the sliding layers up
    /// to it) after a prompt longer than the sliding rows. With at most slack tokens it leaves the cache as it was: the
    /// same forward again gives the logits of a fresh cache that keeps every row, bit for bit. With more than slack it has
    /// already put the last of its own rows in place of keys position Length reads, so the cache refuses every forward
    /// (and a Truncate it cannot honour) with one line saying so, until Reset, which gives those logits again.
    /// </summary>
    [Theory, InlineData("mistral-window"), InlineData("qwen2-window")]
    public void A_forward_that_fails_part_way_leaves_the_cache_as_it_was_or_refused(string name)
    {
        var c = Config(name);
        var rng = new Random(8);
        var ids = Enumerable.Range(0, N).Select(_ => rng.Next(c.Vocab)).ToArray();
        using var b = new ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 9, 0.3), b);
        using var tf = new Transformer(model);
        const int slack = 2;
        int[] plan = [7, 2, 5, .. Enumerable.Repeat(1, N - 14)]; // 7 > the 6 sliding rows, 2 ≤ slack, 5 > slack
        using var every = new KvCache(model, N, slack: N); // a fresh cache that keeps every row
        var want = Decode(tf, every, ids, plan);
        using var cache = new KvCache(model, N, slack);
        double[] Run(int from, int n) { using var r = tf.Forward(ids.AsSpan(from, n), null, cache); return Host(b, r.Logits); }
        void Fail(int from, int n)
        {
            tf.Adaptor = new FailingAdaptor(1);
            try { Assert.Throws<FailingAdaptor.Failure>(() => Run(from, n)); }
            finally { tf.Adaptor = null; }
        }

        var got = new List<double>(Run(0, 7));
        Fail(7, 2);
        Assert.Equal((7, false), (cache.Length, cache.Incomplete));
        got.AddRange(Run(7, 2));
        Fail(9, 5);
        Assert.Equal((9, true), (cache.Length, cache.Incomplete));
        var e = Assert.Throws<InvalidOperationException>(() => Run(9, 1));
        Assert.Contains("the KV cache was left incomplete by a failed forward", e.Message);
        Assert.Contains("DecodeSession.Restart", e.Message);
        Assert.Equal(e.Message, Assert.Throws<InvalidOperationException>(() => cache.Truncate(7)).Message);
        AssertBitEqual([.. got], want[..got.Count], $"{name}: the 9 tokens around the failed forward of 2", rows: 9);
        cache.Reset();
        Assert.False(cache.Incomplete);
        AssertBitEqual(Decode(tf, cache, ids, plan), want, $"{name}: after the failed forward of 5 tokens and Reset");
    }

    // An adaptor that throws when its block runs: a forward that fails after the blocks before it wrote their rows.
    private sealed class FailingAdaptor(int layer) : IMlpAdaptor
    {
        public sealed class Failure() : Exception("the adaptor failed");

        public int Layer => layer;

        public void Apply(IBackend backend, ReadOnlySpan<int> history, ReadOnlySpan<int> ids, IReadOnlyList<int>? segments, Tensor keys, Tensor mlpOut) =>
            throw new Failure();
    }

    /// <summary>
    /// tests/fixtures/swa (torch, transformers' mask predicates) decoded through the sliding rows: a 6-token prompt
    /// (longer than the rows of window 4 or 3) and one token at a time to 13 give torch's logits at every row.
    /// </summary>
    [Theory, MemberData(nameof(SlidingWindowTests.FixtureCases), MemberType = typeof(SlidingWindowTests))]
    public void Decoding_the_torch_fixture_through_the_sliding_rows_gives_its_logits(string arch, string backend)
    {
        string dir = Paths.Fixture(Path.Combine("swa", arch));
        using var b = TestBackends.Create(backend);
        using var model = Model.Load(dir, b);
        using var reference = SafetensorsFile.Open(Path.Combine(dir, "reference.safetensors"));
        const int T = 13;
        int[] ids = reference.ReadI64("input_ids").Take(T).Select(x => (int)x).ToArray();
        var logits = reference.ReadF64("logits").AsSpan(0, T * model.Config.Vocab).ToArray();
        using var tf = new Transformer(model);
        using var cache = new KvCache(model, T);
        Assert.Equal(model.Config.SlidingWindow, cache.Rows(model.Config.Layers - 1)); // default slack 1: window rows
        var got = Decode(tf, cache, ids, [6, 1, 1, 1, 1, 1, 1, 1]);
        Num.AssertClose(got, logits, backend == "f64" ? 1e-12 : 1e-4, $"{arch} {b.Name} decoded through the sliding rows");
    }

    /// <summary>
    /// TargetScorer rewinds its cache to the prompt after each target: with targets longer than the window after a
    /// prompt longer than the sliding rows, its shared-prompt scores equal each target scored alone by a full forward.
    /// </summary>
    [Fact]
    public void Target_scores_through_the_sliding_rows_equal_the_full_forwards()
    {
        var c = Config("qwen2-window");
        using var b = new ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 6, 0.5), b);
        using var tf = new Transformer(model);
        var rng = new Random(4);
        int[] Tokens(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(c.Vocab)).ToArray();
        var prompt = Tokens(12);
        int[][] targets = [Tokens(1), Tokens(9), Tokens(4)];
        var scorer = new TargetScorer(tf, null!); // the id overloads never tokenise
        var together = scorer.Score(prompt, targets);
        for (int i = 0; i < targets.Length; i++)
        {
            var alone = scorer.Score(prompt, targets[i]);
            Num.AssertClose(together[i].LogProbs, alone.LogProbs, 1e-12, $"target {i} ({targets[i].Length} tokens)");
            Assert.Equal(alone.Correct, together[i].Correct);
        }
    }
}
