using Palimpsest.Backends;
using System.Text.Json;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Cli;

/// <summary>
/// A tiny random GPT-2 with the real GPT-2 vocabulary (so the built-in tokenizer applies), written
/// as a Hugging Face folder (config.json + model.safetensors with GPT2LMHeadModel's tensor names),
/// plus a small CounterFact (EasyEdit layout) file beside it. Deleted on dispose.
/// </summary>
internal sealed class TinyGpt2Folder : IDisposable
{
    public const int Layers = 3, DModel = 16, DFf = 24;

    /// <param name="tweak">changes the tensors before they are written (name, values, dtype), e.g. a NaN in one weight</param>
    public TinyGpt2Folder(int seed = 5, Action<List<(string Name, HostTensor Values, string DType)>>? tweak = null)
    {
        Root = Path.Combine(Path.GetTempPath(), "palimpsest-cli-" + Guid.NewGuid().ToString("N")[..12]);
        Model = Path.Combine(Root, "model");
        Directory.CreateDirectory(Model);
        var c = new ModelConfig
        {
            Arch = Architecture.Gpt2, Layers = Layers, DModel = DModel, Heads = 2, KvHeads = 2, HeadDim = 8, DFf = DFf, Vocab = 50257,
            MaxPositions = 64, NormEps = 1e-5, Norm = NormKind.LayerNorm, Act = Activation.GeluTanh, LearnedPositions = true,
            QkvBias = true, AttnOutBias = true, MlpBias = true, TiedHead = true, EosTokenId = 50256,
        };
        var p = RandomWeights.Create(c, seed, 0.3);
        var t = new List<(string, HostTensor, string)>
        {
            ("transformer.wte.weight", p.Wte, "F32"), ("transformer.wpe.weight", p.Wpe!, "F32"),
            ("transformer.ln_f.weight", p.LnFG, "F32"), ("transformer.ln_f.bias", p.LnFB!, "F32"),
        };
        for (int i = 0; i < Layers; i++)
        {
            var b = p.Blocks[i];
            string n = $"transformer.h.{i}.";
            t.Add((n + "ln_1.weight", b.Ln1G, "F32")); t.Add((n + "ln_1.bias", b.Ln1B!, "F32"));
            t.Add((n + "ln_2.weight", b.Ln2G!, "F32")); t.Add((n + "ln_2.bias", b.Ln2B!, "F32"));
            t.Add((n + "attn.c_attn.weight", ConcatCols(b.Wq, b.Wk, b.Wv), "F32"));
            t.Add((n + "attn.c_attn.bias", new HostTensor([3 * DModel], [.. b.Bq!.ToFloat(), .. b.Bk!.ToFloat(), .. b.Bv!.ToFloat()]), "F32"));
            t.Add((n + "attn.c_proj.weight", b.Wo, "F32")); t.Add((n + "attn.c_proj.bias", b.Bo!, "F32"));
            t.Add((n + "mlp.c_fc.weight", b.WUp, "F32")); t.Add((n + "mlp.c_fc.bias", b.BUp!, "F32"));
            t.Add((n + "mlp.c_proj.weight", b.WDown, "F32")); t.Add((n + "mlp.c_proj.bias", b.BDown!, "F32"));
        }
        tweak?.Invoke(t);
        SafetensorsWriter.Write(Path.Combine(Model, "model.safetensors"), t);
        File.WriteAllText(Path.Combine(Model, "config.json"), $$"""
            {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": {{Layers}}, "n_embd": {{DModel}}, "n_head": 2,
             "n_inner": {{DFf}}, "n_positions": 64, "vocab_size": 50257, "activation_function": "gelu_new",
             "layer_norm_epsilon": 1e-05, "tie_word_embeddings": true, "bos_token_id": 50256, "eos_token_id": 50256}
            """);
        Dataset = Path.Combine(Root, "facts.json");
        File.WriteAllText(Dataset, """
            [
              {"case_id": 0, "prompt": "The mother tongue of Danielle Darrieux is", "target_new": "English", "subject": "Danielle Darrieux",
               "ground_truth": "French", "rephrase_prompt": "Danielle Darrieux speaks", "locality_prompt": "Michel Rocard is a native speaker of",
               "locality_ground_truth": "French"},
              {"case_id": 1, "prompt": "The official religion of Edwin of Northumbria is", "target_new": "Islam", "subject": "Edwin of Northumbria",
               "ground_truth": "Christianity", "rephrase_prompt": "Edwin of Northumbria follows", "locality_prompt": "The official religion of Paul is",
               "locality_ground_truth": "Christianity"}
            ]
            """);
    }

    public string Root { get; }
    public string Model { get; }
    public string Dataset { get; }

    public string PathIn(string name) => Path.Combine(Root, name);

    // [d, a] ++ [d, b] ++ [d, c] along columns -> [d, a + b + c]
    private static HostTensor ConcatCols(params HostTensor[] parts)
    {
        int rows = parts[0].Shape[0], cols = parts.Sum(x => x.Shape[1]);
        var o = new float[rows * cols];
        int off = 0;
        foreach (var x in parts)
        {
            int w = x.Shape[1];
            for (int i = 0; i < rows; i++) for (int j = 0; j < w; j++) o[i * cols + off + j] = (float)x[(long)i * w + j];
            off += w;
        }
        return new HostTensor([rows, cols], o);
    }

    public void Dispose()
    {
        try { Directory.Delete(Root, recursive: true); } catch (IOException) { /* a leftover temp folder is harmless */ }
    }
}

public class CliTraceTests
{
    private static bool IsPng(string path) => File.ReadAllBytes(path).AsSpan(0, 8).SequenceEqual(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 });

    [Fact]
    public void Trace_of_one_prompt_prints_the_table_and_writes_png_and_json_per_kind()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("trace");
        var r = CliRunner.Run("trace", m.Model, "--prompt", "The mother tongue of Danielle Darrieux is", "--subject", "Danielle Darrieux",
            "--kind", "all", "--samples", "2", "--window", "2", "--out", outDir);
        Assert.True(r.Code == 0, r.ToString());
        // the subject's 4 tokens are marked, the others are not
        Assert.Contains("\" Danielle\"*", r.Out);
        Assert.Contains("\"ux\"*", r.Out);
        Assert.DoesNotContain("\" is\"*", r.Out);
        foreach (var k in new[] { "hidden", "mlp", "attn" })
        {
            Assert.Contains($"{k}: p(", r.Out);
            Assert.True(IsPng(Path.Combine(outDir, $"trace-{k}.png")), $"trace-{k}.png is not a PNG");
        }
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "trace.json")));
        var root = json.RootElement;
        int T = root.GetProperty("tokens").GetArrayLength();
        Assert.Equal(9, T);
        var hidden = root.GetProperty("kinds").GetProperty("hidden");
        var scores = hidden.GetProperty("scores");
        Assert.Equal(T, scores.GetArrayLength());
        Assert.Equal(TinyGpt2Folder.Layers, scores[0].GetArrayLength());
        // restoring the last token's output of the last block restores the clean probability exactly
        double high = hidden.GetProperty("high").GetDouble(), last = scores[T - 1][TinyGpt2Folder.Layers - 1].GetDouble();
        Assert.True(Math.Abs(high - last) < 1e-6, $"clean p {high} vs restored {last}");
        // tokens before the subject are not corrupted: restoring them gives the corrupted probability
        double low = hidden.GetProperty("low").GetDouble();
        Assert.True(Math.Abs(scores[0][0].GetDouble() - low) < 1e-6, $"first token {scores[0][0]} vs low {low}");
    }

    [Fact]
    public void Trace_over_a_dataset_writes_the_average_by_token_category()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("avg");
        var r = CliRunner.Run("trace", m.Model, "--dataset", m.Dataset, "--limit", "2", "--kind", "mlp", "--samples", "1", "--window", "2", "--out", outDir);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("average over 2 records", r.Out);
        Assert.Contains("last subject token", r.Out);
        Assert.True(IsPng(Path.Combine(outDir, "trace-average-mlp.png")));
        string md = File.ReadAllText(Path.Combine(outDir, "trace-average.md"));
        Assert.Contains("| first subsequent token |", md);
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "trace-average.json")));
        var effect = json.RootElement.GetProperty("kinds").GetProperty("mlp").GetProperty("effect");
        Assert.Equal(6, effect.GetArrayLength());
        Assert.Equal(TinyGpt2Folder.Layers, effect[0].GetArrayLength());
    }

    [Fact]
    public void Trace_with_a_subject_missing_from_the_prompt_is_one_error_line()
    {
        using var m = new TinyGpt2Folder();
        var r = CliRunner.Run("trace", m.Model, "--prompt", "The mother tongue of Danielle Darrieux is", "--subject", "Edwin");
        CliRunner.AssertBadInput(r, "Edwin", "does not occur");
        CliRunner.AssertBadInput(CliRunner.Run("trace", m.Model, "--dataset", m.PathIn("missing.json"), "--out", m.PathIn("x")), "missing.json");
        CliRunner.AssertBadInput(CliRunner.Run("trace", m.Model, "--prompt", "a b", "--subject", "a", "--kind", "bogus"), "bogus");
    }
}
