using Palimpsest.Backends.Cuda;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// What only CudaBackend runs against the fixtures (tests/fixtures): packed sequences in one
/// launch, and KV-cache decoding through gemv.cu. The plain forward and the delta gradient are
/// compared for every backend, CUDA included, by Runtime/FixtureForwardTests.
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
}
