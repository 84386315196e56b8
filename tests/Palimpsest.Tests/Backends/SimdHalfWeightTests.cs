using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// 16-bit weights on <see cref="SimdBackend"/>: the ops on a <see cref="SimdHalfTensor"/> against
/// the same ops on a float32 tensor of the widened values; whole models written as bf16 / fp16
/// safetensors (<see cref="RandomCheckpoint"/>) loaded in place against the float64 reference fed
/// the same (exactly widened) weights; an edit that promotes a layer and a revert that restores
/// it to the bit; the loader's allocations (no float32 copy of the matrices).
/// </summary>
public class SimdHalfWeightTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "palimpsest-half-" + Guid.NewGuid().ToString("N"));

    public void Dispose() { if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true); }

    private const string LlamaJson = """
        { "model_type": "llama", "hidden_size": 24, "intermediate_size": 29, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 39, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "rope_theta": 10000,
          "tie_word_embeddings": false, "hidden_act": "silu" }
        """;

    private const string Gpt2Json = """
        { "model_type": "gpt2", "n_embd": 15, "n_layer": 2, "n_head": 3, "n_inner": 23, "vocab_size": 37, "n_positions": 32,
          "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new" }
        """;

    private string Checkpoint(string json, string dtype)
    {
        string dir = Path.Combine(_dir, dtype + json.GetHashCode().ToString("x"));
        Directory.CreateDirectory(dir);
        string cfg = Path.Combine(dir, "config.json");
        File.WriteAllText(cfg, json);
        RandomCheckpoint.WriteWeights(ModelConfig.Load(cfg), dir, dtype, seed: 3, scale: 0.3);
        return dir;
    }

    public static TheoryData<int, int, int> Shapes => new() { { 1, 29, 31 }, { 2, 17, 33 }, { 7, 131, 65 }, { 128, 37, 300 } };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatMul_on_a_16bit_weight_matches_the_float32_weight_for_every_layout(int m, int n, int k)
    {
        using var b = new SimdBackend();
        var rng = new Random(m * 1000 + n);
        foreach (var kind in new[] { DType.BF16, DType.F16 })
            foreach (bool stored in new[] { false, true }) // stored transposed (nn.Linear's [out, in]) or not
                foreach (bool transB in new[] { false, true })
                    foreach (bool acc in new[] { false, true })
                    {
                        // canonical w [k, n] (transB: [n, k]); its 16-bit storage is w or wᵀ
                        int wr = transB ? n : k, wc = transB ? k : n;
                        var storedShape = stored ? new[] { wc, wr } : new[] { wr, wc };
                        var h = SimdHalfTensor.Round(Rand(rng, wr * wc), storedShape, kind);
                        var w16 = stored ? h.TransposeView() : h;
                        var wide = new float[wr * wc];
                        b.ToHost(w16, wide);
                        var w32 = b.FromHost(wide, wr, wc);
                        var x = b.FromHost(Rand(rng, m * k), m, k);
                        var c0 = Rand(rng, m * n);
                        var c16 = b.FromHost(c0, m, n); var c32 = b.FromHost(c0, m, n);
                        b.MatMul(x, false, w16, transB, c16, acc);
                        b.MatMul(x, false, w32, transB, c32, acc);
                        AssertClose(b, c16, c32, 1e-5, $"{kind} stored-transposed={stored} transB={transB} acc={acc} {m}x{n}x{k}");
                    }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(128)]
    public void Fused_linear_layers_on_a_16bit_weight_equal_their_composition(int m)
    {
        using var b = new SimdBackend();
        var rng = new Random(m);
        Palimpsest.Backends.IFusedLinear fused = b, plain = new Palimpsest.Backends.ComposedLinear(b);
        foreach (bool stored in new[] { false, true })
        {
            var h = SimdHalfTensor.Round(Rand(rng, 33 * 45), stored ? [45, 33] : [33, 45], DType.BF16);
            var w = stored ? h.TransposeView() : h; // [33, 45]
            var x = b.FromHost(Rand(rng, m * 33), m, 33);
            var bias = b.FromHost(Rand(rng, 45), 45);
            var res = b.FromHost(Rand(rng, m * 45), m, 45);
            Tensor Y() => b.Zeros(m, 45);
            var (y0, y1) = (Y(), Y());
            plain.Linear(x, w, bias, y0, res); fused.Linear(x, w, bias, y1, res);
            AssertClose(b, y1, y0, 0, $"Linear m={m} stored-transposed={stored}");
            var (u0, k0, u1, k1) = (Y(), Y(), Y(), Y());
            plain.LinearAct(Activation.GeluTanh, x, w, bias, u0, k0); fused.LinearAct(Activation.GeluTanh, x, w, bias, u1, k1);
            AssertClose(b, k1, k0, 0, $"LinearAct m={m} stored-transposed={stored}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Linear3_of_one_token_over_side_by_side_16bit_views_is_one_product_equal_to_three(bool stored)
    {
        // q, k, v as GPT-2's c_attn holds them (columns of one [K, n] matrix) or as three transposed
        // [out, in] blocks one after the other; unequal widths (grouped k, v) and widths off the vector size
        using var b = new SimdBackend();
        var rng = new Random(stored ? 2 : 1);
        int k = 37, n0 = 45, n1 = 21, n2 = 19, n = n0 + n1 + n2;
        var h = SimdHalfTensor.Round(Rand(rng, k * n), stored ? [n, k] : [k, n], DType.BF16);
        var w = stored ? h.TransposeView() : h; // [k, n]
        var (w0, w1, w2) = (w.ColumnsView(0, n0), w.ColumnsView(n0, n1), w.ColumnsView(n0 + n1, n2));
        var x = b.FromHost(Rand(rng, k), 1, k);
        var (b0, b2) = (b.FromHost(Rand(rng, n0), n0), b.FromHost(Rand(rng, n2), n2));
        Palimpsest.Backends.IFusedLinear fused = b;
        var got = new[] { b.Zeros(1, n0), b.Zeros(1, n1), b.Zeros(1, n2) };
        var want = new[] { b.Zeros(1, n0), b.Zeros(1, n1), b.Zeros(1, n2) };
        fused.Linear3(x, w0, b0, got[0], w1, null, got[1], w2, b2, got[2]);
        Assert.Equal(1, b.AdjacentLinear3Runs);
        Palimpsest.Backends.ComposedLinear.Linear3(b, x, w0, b0, want[0], w1, null, want[1], w2, b2, want[2]);
        for (int i = 0; i < 3; i++) AssertClose(b, got[i], want[i], 1e-6, $"Linear3 output {i}, stored-transposed={stored}");
        // views that are not side by side (k and v swapped), or two rows: three products as before
        fused.Linear3(x, w0, b0, got[0], w2, null, got[2], w1, null, got[1]);
        var x2 = b.FromHost(Rand(rng, 2 * k), 2, k);
        var two = new[] { b.Zeros(2, n0), b.Zeros(2, n1), b.Zeros(2, n2) };
        fused.Linear3(x2, w0, null, two[0], w1, null, two[1], w2, null, two[2]);
        Assert.Equal(1, b.AdjacentLinear3Runs);
    }

    [Fact]
    public void Embed_ToHost_and_column_views_read_the_widened_values()
    {
        using var b = new SimdBackend();
        var rng = new Random(5);
        var src = Rand(rng, 13 * 9);
        foreach (var kind in new[] { DType.BF16, DType.F16 })
        {
            var h = SimdHalfTensor.Round(src, [13, 9], kind);
            var wide = new double[13 * 9];
            b.ToHost(h, wide);
            for (int i = 0; i < wide.Length; i++)
            {
                double want = kind == DType.BF16 ? HalfConvert.BF16ToF32(HalfConvert.F32ToBF16(src[i])) : (float)(Half)src[i];
                Assert.True(wide[i] == want, $"{kind} ToHost value {i}: {wide[i]} != {want}");
            }
            var t = new double[9 * 13];
            b.ToHost(h.TransposeView(), t);
            for (int i = 0; i < 13; i++) for (int j = 0; j < 9; j++) Assert.Equal(wide[i * 9 + j], t[j * 13 + i]);
            var cols = new double[13 * 4];
            b.ToHost(h.ColumnsView(3, 4), cols);
            for (int i = 0; i < 13; i++) for (int j = 0; j < 4; j++) Assert.Equal(wide[i * 9 + 3 + j], cols[i * 4 + j]);
            var tcols = new double[9 * 5];
            b.ToHost(h.TransposeView().ColumnsView(6, 5), tcols);
            for (int i = 0; i < 9; i++) for (int j = 0; j < 5; j++) Assert.Equal(wide[(6 + j) * 9 + i], tcols[i * 5 + j]);
            var e = b.Zeros(3, 9);
            b.Embed([12, 0, 5], h, null, 0, e);
            var got = new double[27];
            b.ToHost(e, got);
            int[] ids = [12, 0, 5];
            for (int r = 0; r < 3; r++) for (int j = 0; j < 9; j++) Assert.Equal(wide[ids[r] * 9 + j], got[r * 9 + j]);
        }
    }

    [Fact]
    public void Ops_that_do_not_read_16bit_weights_say_so_in_one_line()
    {
        using var b = new SimdBackend();
        var h = SimdHalfTensor.Round(new float[6], [2, 3], DType.BF16);
        var e = Assert.Throws<ArgumentException>(() => b.Add(h, h, b.Zeros(2, 3)));
        Assert.Contains("16-bit weight", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("llama", "BF16")]
    [InlineData("llama", "F16")]
    [InlineData("gpt2", "BF16")]
    [InlineData("gpt2", "F16")]
    public void A_16bit_checkpoint_loads_in_place_and_matches_the_float64_reference(string arch, string dtype)
    {
        string dir = Checkpoint(arch == "llama" ? LlamaJson : Gpt2Json, dtype);
        using var simd = new SimdBackend();
        using var model = Model.Load(dir, simd);
        var wq = Assert.IsType<SimdHalfTensor>(model.Params.Blocks[0].Wq);
        Assert.Equal(arch == "llama", wq.Transposed); // nn.Linear [out, in] read as a transposed view; GPT-2's Conv1D as is
        Assert.IsType<SimdHalfTensor>(model.Params.Blocks[1].WDown);
        Assert.IsType<SimdTensor>(model.Params.LnFG); // vectors stay float32
        using var reference = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var refModel = Model.Load(dir, reference);
        using var f32 = new SimdBackend(weights: CpuWeights.F32);
        using var f32Model = Model.Load(dir, f32);
        Assert.IsType<SimdTensor>(f32Model.Params.Blocks[0].Wq);
        int[] ids = [1, 7, 30, 2, 11, 5, 0];
        var got = Logits(model, ids); var want = Logits(refModel, ids); var wide = Logits(f32Model, ids);
        AssertClose(got, want, 1e-4, $"{arch} {dtype}: 16-bit SimdBackend vs float64 reference");
        AssertClose(got, wide, 1e-5, $"{arch} {dtype}: 16-bit SimdBackend vs float32 SimdBackend (widened weights)");
    }

    [Theory]
    [InlineData("BF16")]
    [InlineData("F16")]
    public void A_16bit_gpt2_decodes_q_k_v_in_one_product_and_matches_the_float64_reference(string dtype)
    {
        string dir = Checkpoint(Gpt2Json, dtype);
        using var simd = new SimdBackend();
        using var model = Model.Load(dir, simd);
        using var reference = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var refModel = Model.Load(dir, reference);
        int[] ids = [1, 7, 30, 2, 11, 5, 0];
        var want = Logits(refModel, ids);
        int vocab = model.Config.Vocab;
        using var tf = new Transformer(model);
        using var cache = new KvCache(model, ids.Length);
        for (int t = 0; t < ids.Length; t++)
        {
            using var r = tf.Forward([ids[t]], null, cache); // one token at a time: the decode's M = 1
            var got = new double[vocab];
            simd.ToHost(r.Logits, got);
            AssertClose(got, want.AsSpan(t * vocab, vocab).ToArray(), 1e-4, $"{dtype} gpt2, token {t} decoded alone vs the float64 reference's row");
        }
        Assert.Equal(ids.Length * model.Config.Layers, simd.AdjacentLinear3Runs);
    }

    [Fact]
    public void An_edit_promotes_one_layer_and_the_revert_restores_its_bits()
    {
        string dir = Checkpoint(LlamaJson, "BF16");
        using var simd = new SimdBackend();
        using var model = Model.Load(dir, simd);
        int[] ids = [3, 9, 27, 4];
        var before = Logits(model, ids);
        var w = Assert.IsType<SimdHalfTensor>(model.Params.Blocks[1].WDown);
        int f = model.Config.DFf, d = model.Config.DModel;
        var rng = new Random(11);
        var delta = new WeightDelta(1, 1, Array.ConvertAll(Rand(rng, f), x => (double)x), Array.ConvertAll(Rand(rng, d), x => (double)x));
        var old = model.ApplyDelta(delta);
        Assert.Equal((long)f * d * sizeof(float), w.ExtraBytes);
        var edited = Logits(model, ids);
        Assert.True(edited.Zip(before).Any(p => p.First != p.Second), "the edit changed no logit");
        var now = model.DownProjection(1);
        var dense = delta.ToDense();
        for (int i = 0; i < now.Length; i++)
            Assert.True(now[i] == (float)(old[i] + dense[i]), $"edited WDown value {i}: {now[i]} != {(float)(old[i] + dense[i])}");
        model.SetDownProjection(1, old);
        Assert.Null(w.Promoted);
        Assert.Equal(0, w.ExtraBytes);
        Assert.Equal(before, Logits(model, ids)); // bit-exact: the 16-bit original is what is read again
    }

    [Fact]
    public void Loading_in_place_allocates_no_float32_copy_of_the_matrices()
    {
        // large enough (4M values) that the loader's fixed allocations (config, names, tensor objects) are small beside a copy
        string dir = Checkpoint(LlamaJson.Replace("\"hidden_size\": 24", "\"hidden_size\": 256").Replace("\"intermediate_size\": 29", "\"intermediate_size\": 1001")
            .Replace("\"vocab_size\": 39", "\"vocab_size\": 4001"), "BF16");
        var c = ModelConfig.Load(Path.Combine(dir, "config.json"));
        long matrixValues = RandomCheckpoint.Tensors(c).Where(t => t.Shape.Length == 2).Sum(t => (long)t.Shape[0] * t.Shape[1]);
        using var simd = new SimdBackend();
        Model.Load(dir, simd).Dispose(); // warm up (JIT, config parsing)
        long before = GC.GetTotalAllocatedBytes(precise: true);
        using (var model = Model.Load(dir, simd))
        {
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            output.WriteLine($"matrices {matrixValues * 2} bytes in bf16 ({matrixValues * 4} in float32); the load allocated {allocated} bytes");
            Assert.True(allocated < matrixValues / 2, $"loading allocated {allocated} bytes, not less than a quarter of the {matrixValues * 2} bytes of the bf16 matrices: a copy was made");
        }
        using var f32 = new SimdBackend(weights: CpuWeights.F32);
        long b2 = GC.GetTotalAllocatedBytes(precise: true);
        using (Model.Load(dir, f32)) Assert.True(GC.GetTotalAllocatedBytes(precise: true) - b2 >= matrixValues * 4, "the float32 path should copy (the measure can see a copy)");
    }

    [Fact]
    public void Weights_bf16_rounds_a_float32_checkpoint_and_Llama3_8B_shapes_count_8_03_billion()
    {
        string dir = Checkpoint(LlamaJson, "F32");
        using var simd = new SimdBackend(weights: CpuWeights.BF16);
        using var model = Model.Load(dir, simd);
        Assert.Equal(DType.BF16, Assert.IsType<SimdHalfTensor>(model.Params.Head).Kind);
        using var auto = new SimdBackend();
        using (var m = Model.Load(dir, auto)) Assert.IsType<SimdTensor>(m.Params.Head); // a float32 file keeps today's path

        string cfg = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "bench", "configs", "llama3-8b-shapes", "config.json");
        var tensors = RandomCheckpoint.Tensors(ModelConfig.Load(cfg));
        Assert.Equal(8_030_261_248L, tensors.Sum(t => t.Shape.Aggregate(1L, (a, s) => a * s)));
        Assert.Equal(2 + 32 * 9 + 1, tensors.Count);
    }

    [Fact]
    public void A_float32_checkpoint_loads_tensor_by_tensor_into_the_same_model_and_closes_its_files()
    {
        string dir = Checkpoint(LlamaJson, "F32");
        int[] ids = [3, 17, 5, 30, 9];
        using var auto = new SimdBackend();
        using var host = new SimdBackend(weights: CpuWeights.F32); // the whole-checkpoint host path
        double[] direct, viaHost;
        using (var set = Palimpsest.Models.SafetensorsSet.OpenFolder(dir))
        {
            var p = auto.LoadDirect(ModelConfig.Load(Path.Combine(dir, "config.json")), set);
            Assert.NotNull(p);
            Assert.False(auto.ReadsTheFiles(p!), "a float32 model was reported to read the files in place");
            foreach (var (_, t) in p!.Named()) t.Dispose();
        }
        using (var m = Model.Load(dir, auto)) { Assert.IsType<SimdTensor>(m.Params.Head); direct = Logits(m, ids); }
        using (var m = Model.Load(dir, host)) viaHost = Logits(m, ids);
        Assert.Equal(viaHost, direct); // same float32 weights, same bits
        using var bf = new SimdBackend(weights: CpuWeights.BF16);
        string dir16 = Checkpoint(LlamaJson, "BF16");
        using (var m = Model.Load(dir16, bf)) Assert.True(bf.ReadsTheFiles(m.Params), "a bf16 model read in place was reported not to read the files");
    }

    private static double[] Logits(Model m, int[] ids)
    {
        using var tf = new Transformer(m);
        using var r = tf.Forward(ids);
        var h = new double[r.Logits.Length];
        m.Backend.ToHost(r.Logits, h);
        return h;
    }

    private static float[] Rand(Random rng, int n)
    {
        var x = new float[n];
        for (int i = 0; i < n; i++) x[i] = (float)(rng.NextDouble() * 2 - 1);
        return x;
    }

    private void AssertClose(SimdBackend b, Tensor got, Tensor want, double tol, string what)
    {
        var g = new double[got.Length]; var w = new double[want.Length];
        b.ToHost(got, g); b.ToHost(want, w);
        AssertClose(g, w, tol, what);
    }

    // max |got - want| relative to max |want| (logits and products of unit-scale values)
    private void AssertClose(double[] got, double[] want, double tol, string what)
    {
        double scale = want.Max(Math.Abs), maxAbs = 0; int at = -1;
        for (int i = 0; i < got.Length; i++)
        {
            double e = Math.Abs(got[i] - want[i]);
            if (e > maxAbs) { maxAbs = e; at = i; }
        }
        double rel = maxAbs / Math.Max(scale, 1e-30);
        output.WriteLine($"{what}: max abs {maxAbs:E2}, max rel {rel:E2}");
        Assert.True(rel <= tol, $"{what}: max abs error {maxAbs:E2} at {at}, max rel error {rel:E2} (tolerance {tol:E0})");
    }
}
