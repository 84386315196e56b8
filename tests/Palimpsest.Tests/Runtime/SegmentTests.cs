using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Runtime;

/// <summary>
/// Packed segments (<see cref="ForwardOptions.Segments"/>): one forward / backward over several
/// sequences laid end to end equals the separate forwards row for row, and the separate backwards
/// summed, for every wiring (float64 reference to 1e-12 / 1e-10, float32 SIMD to 1e-5).
/// </summary>
public class SegmentTests
{
    public static TheoryData<string> Configs() => new(SmallConfigs.Names);

    private static readonly int[] Lengths = [5, 1, 7];
    // logit rows of each segment (local) and where its MLP-output intervention goes
    private static readonly int[][] Rows = [[1, 4], [0], [2, 5, 6]];
    private static readonly int[] IvPosition = [3, 0, 4];

    private static double[] Host(IBackend b, Tensor t) { var h = new double[t.Length]; b.ToHost(t, h); return h; }

    private static int[] Starts => [0, Lengths[0], Lengths[0] + Lengths[1]];

    private static (Model Model, int[] Ids) Setup(string name, IBackend b)
    {
        var c = SmallConfigs.Get(name);
        var model = Model.FromHost(c, RandomWeights.Create(c, 17, 0.3), b);
        var rng = new Random(4);
        return (model, Enumerable.Range(0, Lengths.Sum()).Select(_ => rng.Next(c.Vocab)).ToArray());
    }

    [Theory, MemberData(nameof(Configs))]
    public void Packed_forward_equals_the_separate_forwards(string name)
    {
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        var (model, ids) = Setup(name, b);
        using var _ = model;
        var c = model.Config;
        var tf = new Transformer(model);
        using var packed = tf.Forward(ids, new ForwardOptions { Segments = Lengths, CaptureHidden = true });
        var logits = Host(b, packed.Logits);
        var hidden = packed.Hidden!.Select(h => Host(b, h)).ToArray();
        for (int s = 0; s < Lengths.Length; s++)
        {
            int at = Starts[s], n = Lengths[s];
            using var one = tf.Forward(ids.AsSpan(at, n), new ForwardOptions { CaptureHidden = true });
            Num.AssertClose(logits.AsSpan(at * c.Vocab, n * c.Vocab), Host(b, one.Logits), 1e-12, $"{name} segment {s} logits");
            for (int l = 0; l <= c.Layers; l++)
                Num.AssertClose(hidden[l].AsSpan(at * c.DModel, n * c.DModel), Host(b, one.Hidden![l]), 1e-12, $"{name} segment {s} hidden {l}");
        }
        // an inference forward after it (reused scratch) still agrees
        using var again = tf.Forward(ids, new ForwardOptions { Segments = Lengths, LogitsFrom = 5 });
        Num.AssertClose(Host(b, again.Logits), logits.AsSpan(5 * c.Vocab), 1e-15, $"{name} LogitsFrom");
    }

    [Theory, MemberData(nameof(Configs))]
    public void Packed_backward_equals_the_sum_of_the_separate_backwards(string name) => CheckBackward(name, "f64", 1e-12, 1e-10);

    [Theory, MemberData(nameof(Configs))]
    public void Packed_backward_on_the_simd_backend(string name) => CheckBackward(name, "f32", 1e-5, 1e-5);

    /// <summary>
    /// An additive MLP-output intervention in each segment (its own vector and layer), logits at
    /// scattered rows, and a fixed random dlogits: the packed run's logits, intervention gradients
    /// and every weight gradient against the three separate runs (weight gradients summed).
    /// </summary>
    private static void CheckBackward(string name, string backend, double logitTol, double gradTol)
    {
        using var b = TestBackends.Create(backend);
        var (model, ids) = Setup(name, b);
        using var _ = model;
        var c = model.Config;
        var tf = new Transformer(model);
        var rng = new Random(8);
        int S = Lengths.Length, R = Rows.Sum(r => r.Length);
        var deltas = Enumerable.Range(0, S).Select(_ => b.FromHost(Enumerable.Range(0, c.DModel).Select(_ => rng.NextDouble() - 0.5).ToArray(), c.DModel)).ToArray();
        var dHost = Enumerable.Range(0, R * c.Vocab).Select(_ => rng.NextDouble() - 0.5).ToArray();
        int Layer(int s) => s % c.Layers;

        // packed: rows and positions offset by the segment starts
        var rows = Enumerable.Range(0, S).SelectMany(s => Rows[s].Select(r => r + Starts[s])).ToArray();
        var ivs = Enumerable.Range(0, S).Select(s => new Intervention(Layer(s), InterventionSite.MlpOutput, Starts[s] + IvPosition[s], deltas[s])).ToArray();
        var packedGrads = model.ZerosLikeParams();
        var packedIv = Enumerable.Range(0, S).Select(_ => b.Zeros(c.DModel)).ToArray();
        double[] packedLogits;
        using (var r = tf.Forward(ids, new ForwardOptions { Segments = Lengths, LogitRows = rows, Interventions = ivs, KeepForBackward = true }))
        using (var dl = b.FromHost(dHost, R, c.Vocab))
        {
            packedLogits = Host(b, r.Logits);
            tf.Backward(r, dl, packedIv, packedGrads);
        }

        // separate: weight gradients accumulate over the three backwards
        var sumGrads = model.ZerosLikeParams();
        int row0 = 0;
        for (int s = 0; s < S; s++)
        {
            int at = Starts[s], n = Lengths[s], k = Rows[s].Length;
            using var g = b.Zeros(c.DModel);
            using var r = tf.Forward(ids.AsSpan(at, n), new ForwardOptions
            {
                LogitRows = Rows[s], KeepForBackward = true,
                Interventions = [new Intervention(Layer(s), InterventionSite.MlpOutput, IvPosition[s], deltas[s])],
            });
            using var dl = b.FromHost(dHost.AsSpan(row0 * c.Vocab, k * c.Vocab), k, c.Vocab);
            Num.AssertClose(packedLogits.AsSpan(row0 * c.Vocab, k * c.Vocab), Host(b, r.Logits), logitTol, $"{name} {backend} segment {s} logits");
            tf.Backward(r, dl, [g], sumGrads);
            Num.AssertClose(Host(b, packedIv[s]), Host(b, g), gradTol, $"{name} {backend} segment {s} intervention gradient");
            row0 += k;
        }
        var expected = sumGrads.Named().ToDictionary(x => x.Name, x => x.Value);
        foreach (var (pname, g) in packedGrads.Named())
            Num.AssertClose(Host(b, g), Host(b, expected[pname]), gradTol, $"{name} {backend} d/d {pname}");

        foreach (var t in deltas.Concat(packedIv)) t.Dispose();
        foreach (var (_, t) in packedGrads.Named().Concat(sumGrads.Named())) t.Dispose();
    }

    /// <summary>
    /// The reference backend's one-call packed attention (<see cref="ISegmentAttention"/>, what the
    /// CUDA backend runs) against attending segment by segment, forward and backward, on GPT-2
    /// (the architectures with rotary embeddings always go segment by segment).
    /// </summary>
    [Fact]
    public void Packed_attention_equals_attending_segment_by_segment()
    {
        const string name = "gpt2";
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        var (model, ids) = Setup(name, b);
        using var _ = model;
        var c = model.Config;
        var rng = new Random(9);
        var rows = Enumerable.Range(0, Lengths.Length).SelectMany(s => Rows[s].Select(r => r + Starts[s])).ToArray();
        using var delta = b.FromHost(Enumerable.Range(0, c.DModel).Select(_ => rng.NextDouble() - 0.5).ToArray(), c.DModel);
        var dHost = Enumerable.Range(0, rows.Length * c.Vocab).Select(_ => rng.NextDouble() - 0.5).ToArray();
        (double[] Logits, double[] Grad) Run(bool packed)
        {
            var tf = new Transformer(model) { UsePackedAttention = packed };
            Assert.Equal(packed, tf.AttendsPacked);
            using var g = b.Zeros(c.DModel);
            using var r = tf.Forward(ids, new ForwardOptions
            {
                Segments = Lengths, LogitRows = rows, KeepForBackward = true,
                Interventions = [new Intervention(0, InterventionSite.MlpOutput, Starts[2] + 1, delta)],
            });
            using var dl = b.FromHost(dHost, rows.Length, c.Vocab);
            tf.Backward(r, dl, [g]);
            return (Host(b, r.Logits), Host(b, g));
        }
        var one = Run(packed: true);
        var each = Run(packed: false);
        Num.AssertClose(one.Logits, each.Logits, 1e-12, $"{name} logits, packed attention vs segment by segment");
        Num.AssertClose(one.Grad, each.Grad, 1e-10, $"{name} intervention gradient, packed attention vs segment by segment");
    }

    [Fact]
    public void Packed_attention_refuses_lengths_that_do_not_cover_the_rows()
    {
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var q = b.Zeros(6, 4); using var o = b.Zeros(6, 4);
        var e = Assert.Throws<ArgumentException>(() => b.AttentionSegments(q, q, q, [2, 3], 2, 2, 2, o, null));
        Assert.Contains("cover 5 rows", e.Message);
        e = Assert.Throws<ArgumentException>(() => b.AttentionSegments(q, q, q, [2, 0, 4], 2, 2, 2, o, null));
        Assert.Contains("segment 1", e.Message);
    }

    [Fact]
    public void Bad_segments_are_refused_with_the_reason()
    {
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        var (model, ids) = Setup("gpt2", b);
        using var _ = model;
        var tf = new Transformer(model);
        using var cache = new KvCache(model, 16);
        var e = Assert.Throws<ArgumentException>(() => tf.Forward(ids, new ForwardOptions { Segments = Lengths }, cache));
        Assert.Contains("KV cache", e.Message);
        e = Assert.Throws<ArgumentException>(() => tf.Forward(ids, new ForwardOptions { Segments = [5, 7] }));
        Assert.Contains("sum to 12", e.Message);
        e = Assert.Throws<ArgumentException>(() => tf.Forward(ids, new ForwardOptions { Segments = [5, 0, 8] }));
        Assert.Contains("at least one token", e.Message);
    }
}
