using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Runtime;

/// <summary>
/// Resuming a forward at block l (<see cref="ForwardOptions.StartAtLayer"/>) from the residual a
/// forward stopped after block l − 1 returned (<see cref="ForwardOptions.ReturnResidual"/>): the
/// blocks that run do the same float ops in the same order as in the full forward, so logits and
/// intervention gradients must be bit-for-bit equal, on every fixture architecture and CPU backend.
/// </summary>
public class ResumeTests
{
    public static TheoryData<string, string> Cases()
    {
        var d = new TheoryData<string, string>();
        foreach (var a in new[] { "gpt2", "gptj", "gpt_neox", "llama" })
            foreach (var b in TestBackends.Cpu) d.Add(a, b);
        return d;
    }

    private static readonly int[] Lengths = [5, 1, 7];
    private static readonly int[] Rows = [1, 4, 5, 8, 11, 12]; // logit rows across the three segments

    private static double[] Host(IBackend b, Tensor t) { var h = new double[t.Length]; b.ToHost(t, h); return h; }

    /// <summary>Exact equality, element by element; the message gives the largest difference.</summary>
    internal static void AssertBitwise(double[] actual, double[] expected, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double maxAbs = 0; int at = -1, differ = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            if (actual[i].Equals(expected[i])) continue;
            differ++;
            double e = Math.Abs(actual[i] - expected[i]);
            if (at < 0 || e > maxAbs) { maxAbs = e; at = i; }
        }
        Assert.True(differ == 0, $"{what}: {differ} of {actual.Length} values differ, max abs diff {maxAbs:E3} at {at}");
    }

    private static int[] RandomIds(int n, int vocab, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
    }

    private static Tensor RandomVector(IBackend b, int d, Random rng) =>
        b.FromHost(Enumerable.Range(0, d).Select(_ => rng.NextDouble() - 0.5).ToArray(), d);

    /// <summary>
    /// For every l in 1..L−1 and two sets of interventions — an MLP-output one at l alone (the
    /// backward stops inside block l), and one with a ResidualIn at l and an AttnOutput and a
    /// BlockOutput above (the whole of block l runs backward, and the ResidualIn adds into the
    /// resumed forward's copy) — packed segments and scattered logit rows: logits, the gradient of
    /// each intervention and an inference forward's logits equal the full forward's exactly, and
    /// the caller's StartResidual is left as it was.
    /// </summary>
    [Theory, MemberData(nameof(Cases))]
    public void Resumed_forward_and_backward_equal_the_full_ones_bitwise(string arch, string backend)
    {
        using var b = TestBackends.Create(backend);
        using var model = Model.Load(Paths.Fixture(arch), b);
        var c = model.Config;
        var tf = new Transformer(model);
        int T = Lengths.Sum();
        var ids = RandomIds(T, c.Vocab, 3);
        var rng = new Random(11);
        using var dl = b.FromHost(Enumerable.Range(0, Rows.Length * c.Vocab).Select(_ => rng.NextDouble() - 0.5).ToArray(), Rows.Length, c.Vocab);
        var vectors = Enumerable.Range(0, 4).Select(_ => RandomVector(b, c.DModel, rng)).ToArray();
        try
        {
            for (int l = 1; l < c.Layers; l++)
            {
                Intervention[][] sets =
                [
                    [new(l, InterventionSite.MlpOutput, 3, vectors[0])],
                    [
                        new(l, InterventionSite.MlpOutput, 9, vectors[0]), new(l, InterventionSite.ResidualIn, 6, vectors[1]),
                        new(c.Layers - 1, InterventionSite.AttnOutput, 2, vectors[2]), new(c.Layers - 1, InterventionSite.BlockOutput, 12, vectors[3]),
                    ],
                ];
                using var prefix = tf.Forward(ids, new ForwardOptions { Segments = Lengths, StopAfterLayer = l - 1, ReturnResidual = true });
                var residual = prefix.Residual!;
                Assert.Equal(new[] { T, c.DModel }, residual.Shape);
                var residualBefore = Host(b, residual);
                for (int s = 0; s < sets.Length; s++)
                {
                    string what = $"{arch} {backend} l={l} set {s}";
                    var (fullLogits, fullGrads) = RunAndBackward(tf, ids, sets[s], dl, 0, null);
                    var (logits, grads) = RunAndBackward(tf, ids, sets[s], dl, l, residual);
                    AssertBitwise(logits, fullLogits, $"{what} logits");
                    for (int i = 0; i < grads.Length; i++) AssertBitwise(grads[i], fullGrads[i], $"{what} gradient of intervention {i}");
                    // inference (reused scratch) from the same residual
                    using var inf = tf.Forward(ids, new ForwardOptions
                    {
                        Segments = Lengths, LogitRows = Rows, Interventions = sets[s], StartAtLayer = l, StartResidual = residual,
                    });
                    AssertBitwise(Host(b, inf.Logits), fullLogits, $"{what} inference logits");
                    AssertBitwise(Host(b, residual), residualBefore, $"{what} StartResidual after the forwards");
                }
            }
        }
        finally
        {
            foreach (var v in vectors) v.Dispose();
        }
    }

    // logits [R, V] and each intervention's gradient [d] of one kept forward and its backward
    private static (double[] Logits, double[][] Grads) RunAndBackward(Transformer tf, int[] ids, Intervention[] ivs, Tensor dl, int start, Tensor? residual)
    {
        var b = tf.Model.Backend;
        var grads = ivs.Select(_ => b.Zeros(tf.Model.Config.DModel)).ToArray();
        try
        {
            using var r = tf.Forward(ids, new ForwardOptions
            {
                Segments = Lengths, LogitRows = Rows, Interventions = ivs, KeepForBackward = true, StartAtLayer = start, StartResidual = residual,
            });
            tf.Backward(r, dl, grads);
            return (Host(b, r.Logits), grads.Select(g => Host(b, g)).ToArray());
        }
        finally
        {
            foreach (var g in grads) g.Dispose();
        }
    }

    /// <summary>
    /// The backward stops inside the lowest block once its MLP-output gradient is taken (nothing
    /// below is needed without weight gradients): the same gradient as a backward that must run the
    /// whole block because of a zero AttnOutput intervention there.
    /// </summary>
    [Theory, MemberData(nameof(Cases))]
    public void Stopping_inside_the_lowest_block_keeps_its_gradients_exact(string arch, string backend)
    {
        using var b = TestBackends.Create(backend);
        using var model = Model.Load(Paths.Fixture(arch), b);
        var c = model.Config;
        var tf = new Transformer(model);
        var ids = RandomIds(Lengths.Sum(), c.Vocab, 5);
        var rng = new Random(12);
        using var dl = b.FromHost(Enumerable.Range(0, Rows.Length * c.Vocab).Select(_ => rng.NextDouble() - 0.5).ToArray(), Rows.Length, c.Vocab);
        using var delta = RandomVector(b, c.DModel, rng);
        using var zero = b.Zeros(c.DModel);
        for (int l = 0; l < c.Layers; l++)
        {
            var (_, stopped) = RunAndBackward(tf, ids, [new(l, InterventionSite.MlpOutput, 3, delta), new(l, InterventionSite.BlockOutput, 10, delta)], dl, 0, null);
            var (_, through) = RunAndBackward(tf, ids,
                [new(l, InterventionSite.MlpOutput, 3, delta), new(l, InterventionSite.BlockOutput, 10, delta), new(l, InterventionSite.AttnOutput, 0, zero)], dl, 0, null);
            AssertBitwise(stopped[0], through[0], $"{arch} {backend} l={l} MLP-output gradient");
            AssertBitwise(stopped[1], through[1], $"{arch} {backend} l={l} block-output gradient");
        }
    }

    /// <summary>The returned residual is the hidden state leaving block l, and a copy that the next forward's scratch does not overwrite.</summary>
    [Theory]
    [InlineData("f64")]
    [InlineData("f32")]
    public void Returned_residual_is_an_owned_copy_of_the_hidden_state(string backend)
    {
        using var b = TestBackends.Create(backend);
        using var model = Model.Load(Paths.Fixture("gpt2"), b);
        var tf = new Transformer(model);
        var ids = RandomIds(9, model.Config.Vocab, 6);
        using var full = tf.Forward(ids, new ForwardOptions { CaptureHidden = true });
        using var stopped = tf.Forward(ids, new ForwardOptions { StopAfterLayer = 1, ReturnResidual = true });
        using var other = tf.Forward(RandomIds(9, model.Config.Vocab, 7), new ForwardOptions { StopAfterLayer = 2 });
        AssertBitwise(Host(b, stopped.Residual!), Host(b, full.Hidden![2]), "Residual vs hidden_states[2]");
        Assert.Null(other.Residual);
    }

    /// <summary>Every option that cannot go with StartAtLayer / ReturnResidual is refused, naming the option.</summary>
    [Fact]
    public void Bad_resume_options_are_refused_naming_the_option()
    {
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.Load(Paths.Fixture("gpt2"), b);
        var c = model.Config;
        var tf = new Transformer(model);
        var ids = RandomIds(6, c.Vocab, 8);
        using var prefix = tf.Forward(ids, new ForwardOptions { StopAfterLayer = 1, ReturnResidual = true });
        var x = prefix.Residual!;
        using var wrong = b.Zeros(5, c.DModel);
        using var delta = b.Zeros(c.DModel);
        using var cache = new KvCache(model, 16);

        void Refused(string option, ForwardOptions o, KvCache? kv = null)
        {
            var e = Assert.Throws<ArgumentException>(() => tf.Forward(ids, o, kv));
            Assert.Contains(option, e.Message);
        }
        Refused("StartResidual", new ForwardOptions { StartAtLayer = 2 });
        Refused("StartResidual", new ForwardOptions { StartAtLayer = 2, StartResidual = wrong });
        Refused("StartResidual", new ForwardOptions { StartResidual = x });
        Refused("StartAtLayer", new ForwardOptions { StartAtLayer = c.Layers, StartResidual = x });
        Refused("StartAtLayer", new ForwardOptions { StartAtLayer = -1, StartResidual = x });
        Refused("KV cache", new ForwardOptions { StartAtLayer = 2, StartResidual = x }, cache);
        Refused("CaptureHidden", new ForwardOptions { StartAtLayer = 2, StartResidual = x, CaptureHidden = true });
        Refused("CaptureKeysAt", new ForwardOptions { StartAtLayer = 2, StartResidual = x, CaptureKeysAt = [3, 1] });
        Refused("StartAtLayer", new ForwardOptions { StartAtLayer = 2, StartResidual = x, Interventions = [new(1, InterventionSite.MlpOutput, 0, delta)] });
        Refused("StopAfterLayer", new ForwardOptions { StartAtLayer = 2, StartResidual = x, StopAfterLayer = 1 });
        Refused("ReturnResidual", new ForwardOptions { ReturnResidual = true });

        // a resumed forward has no activations below its start: no weight gradients
        using var r = tf.Forward(ids, new ForwardOptions
        {
            StartAtLayer = 2, StartResidual = x, KeepForBackward = true, Interventions = [new(2, InterventionSite.MlpOutput, 1, delta)],
        });
        using var dl = b.Zeros(r.Logits.Shape);
        using var g = b.Zeros(c.DModel);
        var weights = model.ZerosLikeParams();
        try
        {
            var e = Assert.Throws<ArgumentException>(() => tf.Backward(r, dl, [g], weights));
            Assert.Contains("StartAtLayer", e.Message);
            Assert.Contains("weight gradients", e.Message);
        }
        finally
        {
            foreach (var (_, t) in weights.Named()) t.Dispose();
        }

        // resuming and stopping again (a middle slice of the blocks) works
        using var mid = tf.Forward(ids, new ForwardOptions { StartAtLayer = 2, StartResidual = x, StopAfterLayer = 2, ReturnResidual = true });
        using var ref3 = tf.Forward(ids, new ForwardOptions { StopAfterLayer = 2, ReturnResidual = true });
        AssertBitwise(Host(b, mid.Residual!), Host(b, ref3.Residual!), "blocks 2..2 from the residual vs blocks 0..2");
    }
}
