using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Runtime;

/// <summary>
/// Mistral's and Qwen2's sliding window through the whole model: against torch (tests/fixtures/swa, a
/// transformers-free float64 forward with transformers' mask predicates), the SIMD backend against the
/// float64 reference on random odd-sized models, Qwen2's per-layer split, and decoding with the KV cache
/// past the window. The finite-difference checks run on SmallConfigs' mistral-window and qwen2-window
/// (GradientCheckTests), as do the decode, segment and logit-row theories.
/// </summary>
public class SlidingWindowTests
{
    private static double[] Host(IBackend b, Tensor t) { var h = new double[t.Length]; b.ToHost(t, h); return h; }

    public static TheoryData<string, string> FixtureCases() => new()
    {
        { "mistral", "f64" }, { "mistral", "f32" }, { "qwen2", "f64" }, { "qwen2", "f32" },
    };

    /// <summary>
    /// config.json → model: the window, the sliding layers, the tensor names (Qwen2's biases, its tied head)
    /// and the forward, against torch's logits and hidden states. float64 against float64 agrees to
    /// rounding (no transformers float32 casts in this fixture); float32 to 1e-4.
    /// </summary>
    [Theory, MemberData(nameof(FixtureCases))]
    public void Logits_and_hidden_states_match_torch(string arch, string backend)
    {
        string dir = Paths.Fixture(Path.Combine("swa", arch));
        using var b = TestBackends.Create(backend);
        using var model = Model.Load(dir, b);
        var c = model.Config;
        if (arch == "mistral") Assert.Equal((4, (IReadOnlyList<bool>?)null), (c.SlidingWindow!.Value, c.SlidingLayers));
        else
        {
            Assert.Equal((0, 3, 3), (c.AttentionWindow(0), c.AttentionWindow(1), c.AttentionWindow(2)));
            Assert.True(c.QkvBias && c.TiedHead && !c.AttnOutBias);
        }
        using var reference = SafetensorsFile.Open(Path.Combine(dir, "reference.safetensors"));
        var ids = reference.ReadI64("input_ids");       // [2, 13]
        var logits = reference.ReadF64("logits");       // [2, 13, V]
        var hidden = reference.ReadF64("hidden_states"); // [L+1, 2, 13, d]
        int n = 2, T = 13, V = c.Vocab, d = c.DModel, L = c.Layers;
        double tol = backend == "f64" ? 1e-12 : 1e-4;
        using var tf = new Transformer(model);
        for (int s = 0; s < n; s++)
        {
            int[] seq = ids.Skip(s * T).Take(T).Select(x => (int)x).ToArray();
            using var r = tf.Forward(seq, new ForwardOptions { CaptureHidden = true });
            for (int l = 0; l <= L; l++) // layer by layer first: a failure names the first block that differs
                Num.AssertClose(Host(b, r.Hidden![l]), hidden.AsSpan(((l * n) + s) * T * d, T * d), tol, $"{arch} {b.Name} seq {s} hidden {l}");
            Num.AssertClose(Host(b, r.Logits), logits.AsSpan(s * T * V, T * V), tol, $"{arch} {b.Name} seq {s} logits");
        }
    }

    /// <summary>The fixture is sensitive to the window: the same weights without it miss torch's logits by far.</summary>
    [Theory, InlineData("mistral"), InlineData("qwen2")]
    public void Without_the_window_the_fixture_logits_differ(string arch)
    {
        string dir = Paths.Fixture(Path.Combine("swa", arch));
        using var b = new ReferenceBackend();
        var (config, host) = ModelLoader.LoadHost(dir);
        using var model = Model.FromHost(config with { SlidingWindow = null, SlidingLayers = null }, host, b);
        using var reference = SafetensorsFile.Open(Path.Combine(dir, "reference.safetensors"));
        int[] seq = reference.ReadI64("input_ids").Take(13).Select(x => (int)x).ToArray();
        using var r = new Transformer(model).Forward(seq);
        double rel = Num.RelErr(Host(b, r.Logits), reference.ReadF64("logits").AsSpan(0, 13 * config.Vocab));
        Assert.True(rel > 1e-2, $"{arch}: full attention is within {rel:E2} of the windowed logits");
    }

    public static TheoryData<string> Windowed() => new("mistral-window", "qwen2-window");

    /// <summary>
    /// SimdBackend against the float64 reference on a sequence 5× the window (several of the SIMD
    /// backend's query blocks), logits and every hidden state, with the probs kept for the backward and without.
    /// </summary>
    [Theory, MemberData(nameof(Windowed))]
    public void Simd_forward_and_backward_match_the_reference_past_the_window(string name)
    {
        var c = SmallConfigs.Get(name) with { MaxPositions = 40 };
        var rng = new Random(8);
        var ids = Enumerable.Range(0, 5 * c.SlidingWindow!.Value + 2).Select(_ => rng.Next(c.Vocab)).ToArray();
        var targets = ids.Skip(1).Append(-1).ToArray();
        var host = RandomWeights.Create(c, 31, 0.3);
        (double[] Logits, double[][] Hidden, double[] Grad) Run(IBackend b)
        {
            using var model = Model.FromHost(c, host, b);
            using var tf = new Transformer(model);
            using var r = tf.Forward(ids, new ForwardOptions { CaptureHidden = true, KeepForBackward = true });
            using var dl = b.Zeros(r.Logits.Shape);
            b.CrossEntropy(r.Logits, targets, dl);
            var grads = model.ZerosLikeParams();
            tf.Backward(r, dl, [], grads);
            var result = (Host(b, r.Logits), r.Hidden!.Select(h => Host(b, h)).ToArray(), Host(b, grads.Blocks[c.Layers - 1].Wq));
            foreach (var (_, t) in grads.Named()) t.Dispose();
            using var plain = tf.Forward(ids);
            Num.AssertClose(Host(b, plain.Logits), result.Item1, 1e-6, $"{name} {b.Name}: logits without the probs kept");
            return result;
        }
        using var reference = new ReferenceBackend();
        using var simd = new SimdBackend();
        var want = Run(reference);
        var got = Run(simd);
        Num.AssertClose(got.Logits, want.Logits, 1e-4, $"{name} logits");
        for (int l = 0; l <= c.Layers; l++) Num.AssertClose(got.Hidden[l], want.Hidden[l], 1e-4, $"{name} hidden {l}");
        Num.AssertClose(got.Grad, want.Grad, 1e-3, $"{name} gradient of the last block's Wq");
    }

    /// <summary>
    /// Qwen2's max_window_layers: layer 0 of qwen2-window attends fully, so the residual after it equals
    /// the unwindowed model's; layers 1 and 2 slide, so after them it differs.
    /// </summary>
    [Fact]
    public void Qwen2_windows_only_the_layers_from_max_window_layers()
    {
        var c = SmallConfigs.Get("qwen2-window");
        var host = RandomWeights.Create(c, 12, 0.3);
        var ids = Enumerable.Range(0, 11).Select(i => (i * 7) % c.Vocab).ToArray();
        using var b = new ReferenceBackend();
        double[][] Hidden(ModelConfig cfg)
        {
            using var model = Model.FromHost(cfg, host, b);
            using var r = new Transformer(model).Forward(ids, new ForwardOptions { CaptureHidden = true });
            return r.Hidden!.Select(h => Host(b, h)).ToArray();
        }
        var split = Hidden(c);
        var full = Hidden(c with { SlidingWindow = null, SlidingLayers = null });
        var everyLayer = Hidden(c with { SlidingLayers = null });
        Assert.Equal(full[1], split[1]);
        Assert.True(Num.RelErr(everyLayer[1], split[1]) > 1e-3, "windowing layer 0 changed nothing");
        Assert.True(Num.RelErr(split[2], full[2]) > 1e-3, "layer 1's window changed nothing");
    }

    /// <summary>
    /// Decoding past the window: a prompt, then one token at a time to 4× the window, through the KV cache
    /// (whose sliding layers keep only their last rows), equals the full forward's logits — on the
    /// reference to rounding, on the SIMD backend (whose decode step reads only the window) to 1e-4.
    /// </summary>
    [Theory, MemberData(nameof(Windowed))]
    public void Decode_with_the_cache_past_the_window_equals_the_full_forward(string name)
    {
        var c = SmallConfigs.Get(name) with { MaxPositions = 40 };
        int steps = 4 * c.SlidingWindow!.Value + 3;
        var rng = new Random(2);
        var ids = Enumerable.Range(0, steps).Select(_ => rng.Next(c.Vocab)).ToArray();
        var host = RandomWeights.Create(c, 23, 0.3);
        foreach (var (b, tol) in new (IBackend, double)[] { (new ReferenceBackend(), 1e-12), (new SimdBackend(), 1e-4) })
        {
            using var _ = b;
            using var model = Model.FromHost(c, host, b);
            using var tf = new Transformer(model);
            using var full = tf.Forward(ids);
            var want = Host(b, full.Logits);
            using var cache = new KvCache(model, steps);
            var got = new List<double>();
            int at = 0;
            foreach (int n in new[] { 2 }.Concat(Enumerable.Repeat(1, steps - 2)))
            {
                using var r = tf.Forward(ids.AsSpan(at, n), null, cache);
                got.AddRange(Host(b, r.Logits));
                at += n;
            }
            Num.AssertClose(got.ToArray(), want, tol, $"{name} {b.Name} cached logits over {steps} tokens, window {c.SlidingWindow}");
        }
    }

    /// <summary>
    /// Generation runs past the window (the context is max_position_embeddings, not the window) and picks the
    /// argmax of the full forward at every step.
    /// </summary>
    [Fact]
    public void Greedy_generation_past_the_window_follows_the_full_forward()
    {
        var c = SmallConfigs.Get("mistral-window") with { MaxPositions = 30 };
        using var b = new SimdBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 9, 0.5), b);
        using var tf = new Transformer(model);
        int[] prompt = [3, 1, 4];
        var got = new Generator(tf).Generate(prompt, c.MaxPositions - prompt.Length);
        Assert.Equal(c.MaxPositions - prompt.Length, got.Length);
        var seq = prompt.Concat(got).ToArray();
        using var full = tf.Forward(seq);
        var logits = Host(b, full.Logits);
        for (int t = prompt.Length - 1; t < seq.Length - 1; t++)
            Assert.Equal(Generator.ArgMax(logits.AsSpan(t * c.Vocab, c.Vocab)), seq[t + 1]);
    }
}
