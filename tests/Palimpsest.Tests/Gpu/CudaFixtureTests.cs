using Palimpsest.Backends.Cuda;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// The whole Transformer on CudaBackend against what transformers computed in float64
/// (tests/fixtures): logits and every hidden state within 1e-4 relative with float32 weights and
/// 1e-2 with bfloat16 weights; the target loss and the delta gradient within 1e-4 / 1e-3.
/// </summary>
[Trait(Gpu.Trait, Gpu.TraitValue)]
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public class CudaFixtureTests
{
    public static TheoryData<string, DType> Cases()
    {
        var d = new TheoryData<string, DType>();
        foreach (var a in new[] { "gpt2", "gptj", "gpt_neox", "llama" })
            foreach (var s in new[] { DType.F32, DType.F16, DType.BF16 }) d.Add(a, s);
        return d;
    }

    private static double Tol(DType storage) => storage switch { DType.F32 => 1e-4, DType.F16 => 2e-3, _ => 1e-2 };

    private static double[] Host(CudaBackend b, Tensor t) { var h = new double[t.Length]; b.ToHost(t, h); return h; }

    [Theory, MemberData(nameof(Cases))]
    public void Forward_matches_transformers(string arch, DType storage)
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend(storage);
        using var model = Model.Load(Paths.Fixture(arch), b);
        using var reference = SafetensorsFile.Open(Path.Combine(Paths.Fixture(arch), "reference.safetensors"));
        var ids = reference.ReadI64("input_ids");        // [3, 12]
        var logits = reference.ReadF64("logits");        // [3, 12, V]
        var hidden = reference.ReadF64("hidden_states"); // [L+1, 3, 12, d]
        var c = model.Config;
        int n = 3, T = 12, V = c.Vocab, d = c.DModel, L = c.Layers;
        using var tf = new Transformer(model);
        for (int s = 0; s < n; s++)
        {
            int[] seq = ids.Skip(s * T).Take(T).Select(x => (int)x).ToArray();
            using var r = tf.Forward(seq, new ForwardOptions { CaptureHidden = true });
            Num.AssertClose(Host(b, r.Logits), logits.AsSpan(s * T * V, T * V), Tol(storage), $"{arch} {b.Name} seq {s} logits");
            for (int l = 0; l <= L; l++)
                Num.AssertClose(Host(b, r.Hidden![l]), hidden.AsSpan(((l * n) + s) * T * d, T * d), Tol(storage), $"{arch} {b.Name} seq {s} hidden {l}");
        }
    }

    /// <summary>
    /// The three fixture sequences packed into one forward (Segments): GPT-2 attends in one
    /// launch (ISegmentAttention), the rotary models segment by segment; both within 1e-4 of
    /// transformers. Then a packed backward to an MLP-output δ in each sequence against the float64
    /// reference backend's packed backward, within 1e-3.
    /// </summary>
    [Theory]
    [InlineData("gpt2")]
    [InlineData("gptj")]
    [InlineData("gpt_neox")]
    [InlineData("llama")]
    public void Packed_sequences_match_transformers_and_the_reference_backward(string arch)
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        using var model = Model.Load(Paths.Fixture(arch), b);
        using var reference = SafetensorsFile.Open(Path.Combine(Paths.Fixture(arch), "reference.safetensors"));
        var ids = reference.ReadI64("input_ids").Select(x => (int)x).ToArray(); // [3 * 12]
        var logits = reference.ReadF64("logits");                                // [3, 12, V]
        var c = model.Config;
        int[] segs = [12, 12, 12];
        using var tf = new Transformer(model);
        Assert.Equal(arch == "gpt2", tf.AttendsPacked);
        using (var r = tf.Forward(ids, new ForwardOptions { Segments = segs }))
            Num.AssertClose(Host(b, r.Logits), logits, 1e-4, $"{arch} packed logits");

        using var rb = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var rmodel = Model.Load(Paths.Fixture(arch), rb);
        var rtf = new Transformer(rmodel);
        var rng = new Random(3);
        var delta = Enumerable.Range(0, c.DModel).Select(_ => rng.NextDouble() - 0.5).ToArray();
        int[] rows = [3, 11, 17, 30, 35];
        var dHost = Enumerable.Range(0, rows.Length * c.Vocab).Select(_ => rng.NextDouble() - 0.5).ToArray();
        double[] Grad(Transformer t, Palimpsest.Backends.IBackend be)
        {
            using var dv = be.FromHost(delta, c.DModel);
            using var g = be.Zeros(c.DModel);
            int layer = c.Layers / 2;
            using var r = t.Forward(ids, new ForwardOptions
            {
                Segments = segs, LogitRows = rows, KeepForBackward = true,
                Interventions = [new Intervention(layer, InterventionSite.MlpOutput, 4, dv), new Intervention(layer, InterventionSite.MlpOutput, 20, dv)],
            });
            using var dl = be.FromHost(dHost, rows.Length, c.Vocab);
            t.Backward(r, dl, [g, g]);
            var h = new double[c.DModel]; be.ToHost(g, h); return h;
        }
        Num.AssertClose(Grad(tf, b), Grad(rtf, rb), 1e-3, $"{arch} packed delta gradient, CUDA vs float64 reference");
    }

    // A decode step's one-row products go through gemv.cu (fused epilogues), every storage type.
    [Theory, MemberData(nameof(Cases))]
    public void Decoding_with_the_kv_cache_matches_the_full_forward(string arch, DType storage)
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend(storage);
        using var model = Model.Load(Paths.Fixture(arch), b);
        using var reference = SafetensorsFile.Open(Path.Combine(Paths.Fixture(arch), "reference.safetensors"));
        int[] seq = reference.ReadI64("input_ids").Take(12).Select(x => (int)x).ToArray();
        var logits = reference.ReadF64("logits");
        int V = model.Config.Vocab;
        using var tf = new Transformer(model);
        using var cache = new KvCache(model, 16);
        using (tf.Forward(seq.AsSpan(0, 5), null, cache)) { }
        for (int t = 5; t < 12; t++)
        {
            using var r = tf.Forward(seq.AsSpan(t, 1), null, cache);
            Num.AssertClose(Host(b, r.Logits), logits.AsSpan(t * V, V), Tol(storage), $"{arch} {storage} decode step {t}");
        }
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("gptj")]
    [InlineData("gpt_neox")]
    [InlineData("llama")]
    public void Target_loss_and_delta_gradient_match_transformers(string arch)
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        using var model = Model.Load(Paths.Fixture(arch), b);
        using var reference = SafetensorsFile.Open(Path.Combine(Paths.Fixture(arch), "reference.safetensors"));
        int[] ids = reference.ReadI64("grad.input_ids").Select(x => (int)x).ToArray();
        int layer = (int)reference.ReadI64("grad.layer")[0], pos = (int)reference.ReadI64("grad.position")[0];
        int start = (int)reference.ReadI64("grad.target_start")[0];
        double expectedLoss = reference.ReadF64("grad.loss")[0];
        var expectedGrad = reference.ReadF64("grad.delta_grad");

        using var tf = new Transformer(model);
        using var delta = b.Zeros(model.Config.DModel);
        using var r = tf.Forward(ids, new ForwardOptions
        {
            KeepForBackward = true,
            Interventions = [new Intervention(layer, InterventionSite.MlpOutput, pos, delta)],
        });
        var targets = Enumerable.Repeat(-1, ids.Length).ToArray();
        for (int t = start; t < ids.Length; t++) targets[t - 1] = ids[t];
        using var dlogits = b.Zeros(r.Logits.Shape);
        double loss = b.CrossEntropy(r.Logits, targets, dlogits);
        using var grad = b.Zeros(model.Config.DModel);
        tf.Backward(r, dlogits, [grad]);
        Assert.True(Math.Abs(loss - expectedLoss) <= 1e-4 * Math.Abs(expectedLoss), $"{arch} loss {loss} vs {expectedLoss} (tolerance 1e-4 relative)");
        Num.AssertClose(Host(b, grad), expectedGrad, 1e-3, $"{arch} delta gradient");
    }
}
