using System.Text.Json;
using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Editing;
using Palimpsest.Journal;
using Palimpsest.Models;
using static Palimpsest.Tests.Journal.JournalFixtures;

namespace Palimpsest.Tests.Journal;

/// <summary>
/// Reads a PEFT adapter folder back the way PEFT applies it (delta = B·A·(lora_alpha / r) in torch's
/// [out, in] layout, transposed onto a [in, out] Conv1D weight when fan_in_fan_out) and checks the
/// result against an edited checkpoint. Module names are written out here, not taken from LoraExport.
/// </summary>
internal static class LoraAdapter
{
    /// <summary>PEFT's module path of block l's down-projection for each architecture's causal-LM class.</summary>
    public static string Module(string arch, int l) => arch switch
    {
        "gpt2" => $"base_model.model.transformer.h.{l}.mlp.c_proj",
        "gptj" => $"base_model.model.transformer.h.{l}.mlp.fc_out",
        "gpt_neox" => $"base_model.model.gpt_neox.layers.{l}.mlp.dense_4h_to_h",
        "llama" => $"base_model.model.model.layers.{l}.mlp.down_proj",
        _ => throw new ArgumentException(arch),
    };

    public static string DownTensor(string arch, int l) => Module(arch, l)["base_model.model.".Length..] + ".weight";

    public static JsonElement Config(string adapter) =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(adapter, "adapter_config.json"))).RootElement;

    /// <summary>Dense ΔW [f, d] (canonical [in, out]) of layer l as the adapter gives it, float64 from its float32 factors; |A|·|B| alongside for error bounds.</summary>
    public static (double[] Delta, double[] AbsProduct) Delta(string adapter, string arch, int l, int f, int d)
    {
        var cfg = Config(adapter);
        int r = cfg.GetProperty("r").GetInt32();
        double scaling = cfg.GetProperty("lora_alpha").GetDouble() / r;
        using var file = SafetensorsFile.Open(Path.Combine(adapter, "adapter_model.safetensors"));
        string m = Module(arch, l);
        Assert.Equal([r, f], file.Info(m + ".lora_A.weight").Shape);
        Assert.Equal([d, r], file.Info(m + ".lora_B.weight").Shape);
        Assert.Equal("F32", file.Info(m + ".lora_A.weight").DType);
        var a = file.ReadF32(m + ".lora_A.weight");
        var b = file.ReadF32(m + ".lora_B.weight");
        var delta = new double[(long)f * d];
        var abs = new double[(long)f * d];
        for (int i = 0; i < f; i++)
            for (int j = 0; j < d; j++)
                for (int k = 0; k < r; k++)
                {
                    double p = (double)b[j * r + k] * a[k * f + i] * scaling; // (B·A)[j, i] = ΔWᵀ
                    delta[(long)i * d + j] += p;
                    abs[(long)i * d + j] += Math.Abs(p);
                }
        return (delta, abs);
    }

    /// <summary>
    /// base + adapter equals the edited checkpoint in every down-projection, to float32 rounding:
    /// |base + B·A − edited| ≤ 4·2⁻²⁴·(|edited| + Σ|A||B|) per element, in the stored layout
    /// (transposed onto [f, d] with fan_in_fan_out, onto [d, f] without). Layers the adapter leaves
    /// out must be the base's bit for bit, and each layer it holds must differ from the base.
    /// </summary>
    public static void AssertReproduces(string baseModel, string adapter, string edited, string arch, int layers, int f, int d)
    {
        var cfg = Config(adapter);
        bool fanInFanOut = cfg.GetProperty("fan_in_fan_out").GetBoolean();
        Assert.Equal(arch == "gpt2", fanInFanOut);
        var covered = cfg.GetProperty("layers_to_transform").EnumerateArray().Select(e => e.GetInt32()).ToHashSet();
        using var b = SafetensorsFile.Open(Path.Combine(baseModel, "model.safetensors"));
        using var e = SafetensorsFile.Open(Path.Combine(edited, "model.safetensors"));
        for (int l = 0; l < layers; l++)
        {
            string name = DownTensor(arch, l);
            var w0 = b.ReadF32(name);
            var w1 = e.ReadF32(name);
            if (!covered.Contains(l)) { Assert.True(w0.SequenceEqual(w1), $"layer {l} is not in the adapter but was edited"); continue; }
            Assert.False(w0.SequenceEqual(w1), $"layer {l} is in the adapter but the edited checkpoint does not change it");
            var (delta, abs) = Delta(adapter, arch, l, f, d);
            double maxAbs = 0, maxRel = 0;
            for (int i = 0; i < f; i++)
                for (int j = 0; j < d; j++)
                {
                    long stored = fanInFanOut ? (long)i * d + j : (long)j * f + i;
                    double applied = w0[stored] + delta[(long)i * d + j];
                    double err = Math.Abs(applied - w1[stored]);
                    maxAbs = Math.Max(maxAbs, err);
                    maxRel = Math.Max(maxRel, err / (Math.Abs(w1[stored]) + abs[(long)i * d + j] + 1e-30));
                }
            Assert.True(maxRel <= 4 * Math.Pow(2, -24),
                $"layer {l}: base + B·A differs from the edited checkpoint by max abs {maxAbs:e3}, max rel {maxRel:e3} (bound {4 * Math.Pow(2, -24):e3})");
        }
    }

    /// <summary>||ΔW − ΔW_file||_F / ||ΔW||_F with ΔW the sum of the given (journal) deltas of layer l.</summary>
    public static double FileError(string adapter, string arch, IEnumerable<WeightDelta> journal, int l, int f, int d)
    {
        var (fromFile, _) = Delta(adapter, arch, l, f, d);
        var exact = Sum(journal, f, d);
        double diff = 0, norm = 0;
        for (long i = 0; i < exact.Length; i++) { diff += Math.Pow(exact[i] - fromFile[i], 2); norm += exact[i] * exact[i]; }
        return Math.Sqrt(diff / norm);
    }

    public static double[] Sum(IEnumerable<WeightDelta> deltas, int f, int d)
    {
        var w = new double[(long)f * d];
        foreach (var x in deltas)
        {
            var dense = x.ToDense();
            for (long i = 0; i < w.Length; i++) w[i] += dense[i];
        }
        return w;
    }

    /// <summary>Eckart–Young from a dense SVD: the relative error of the best rank-<paramref name="rank"/> approximation.</summary>
    public static double BestRankError(double[] w, int f, int d, int rank)
    {
        var s = Matrix<double>.Build.Dense(d, f, w).Transpose().Svd(computeVectors: false).S; // column-major d×f of row-major f×d = Wᵀ
        double all = s.Sum(x => x * x), tail = s.Skip(rank).Sum(x => x * x);
        return Math.Sqrt(tail / all);
    }
}

public class LoraExportTests
{
    /// <summary>Transposed (nn.Linear) checkpoints: three edits over two layers, one of them reverted;
    /// the exact adapter on the source reproduces the edited checkpoint, without fan_in_fan_out.</summary>
    [Theory]
    [InlineData("gptj", 256, "fc_out")]
    [InlineData("gpt_neox", 256, "dense_4h_to_h")]
    [InlineData("llama", 172, "down_proj")]
    public void Exact_adapter_on_the_source_reproduces_the_edited_checkpoint(string arch, int f, string module)
    {
        using var tmp = NewTemp();
        using var m = EditedModel.Create(Paths.Fixture(arch), tmp.Sub("edited"));
        long keep1 = m.Apply([RandomDelta(21, layer: 1, f: f), RandomDelta(22, layer: 3, f: f)], Record(21));
        long gone = m.Apply([RandomDelta(23, layer: 2, f: f)], Record(23));
        long keep2 = m.Apply([RandomDelta(24, layer: 1, f: f)], Record(24));
        m.Revert(gone);
        var result = LoraExport.Export(m, tmp.Sub("adapter"), maxRank: null);

        Assert.Equal([1, 3], result.Layers.Select(l => l.Layer));
        int rank1 = m.DeltasOf(keep1)[0].Rank + m.DeltasOf(keep2)[0].Rank;
        Assert.Equal(rank1, result.Layers[0].TotalRank);
        Assert.Equal(rank1, result.Layers[0].Rank);
        Assert.All(result.Layers, l => Assert.Equal(0, l.RelativeError));
        var cfg = LoraAdapter.Config(result.AdapterDir);
        Assert.Equal("LORA", cfg.GetProperty("peft_type").GetString());
        Assert.Equal("CAUSAL_LM", cfg.GetProperty("task_type").GetString());
        Assert.Equal(result.Rank, cfg.GetProperty("r").GetInt32());
        Assert.Equal(result.Rank, cfg.GetProperty("lora_alpha").GetInt32());
        Assert.Equal([module], cfg.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal([1, 3], cfg.GetProperty("layers_to_transform").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(Path.GetFullPath(Paths.Fixture(arch)), cfg.GetProperty("base_model_name_or_path").GetString());
        using (var file = SafetensorsFile.Open(Path.Combine(result.AdapterDir, "adapter_model.safetensors")))
            Assert.Equal(4, file.Tensors.Count);
        Assert.Equal(["adapter_config.json", "adapter_model.safetensors"], Directory.GetFiles(result.AdapterDir).Select(Path.GetFileName).Order());
        Assert.Empty(Directory.GetDirectories(tmp.Path, "adapter.exporting-*"));
        LoraAdapter.AssertReproduces(Paths.Fixture(arch), result.AdapterDir, m.Dir, arch, m.Config.Layers, f, m.Config.DModel);
    }

    /// <summary>Truncation: the reported error is ||ΔW − ΔW_R|| / ||ΔW|| of the returned factors and the
    /// Eckart–Young optimum of a dense SVD, both through the thin-QR path (total rank 5) and the dense
    /// one (total rank 70 > d = 64).</summary>
    [Theory]
    [InlineData(new[] { 1, 2, 2 }, 2)]
    [InlineData(new[] { 70 }, 3)]
    public void Truncated_layers_report_the_best_rank_error_of_their_own_factors(int[] ranks, int maxRank)
    {
        const int f = 172, d = 64;
        var rng = new Random(ranks.Length * 100 + maxRank);
        var deltas = ranks.Select(k => new WeightDelta(2, k,
            Enumerable.Range(0, k * f).Select(_ => rng.NextDouble() - 0.5).ToArray(),
            Enumerable.Range(0, k * d).Select(_ => rng.NextDouble() - 0.5).ToArray())).ToList();
        var layer = LoraExport.FactorLayer(2, deltas, f, d, maxRank);
        Assert.Equal(ranks.Sum(), layer.TotalRank);
        Assert.Equal(maxRank, layer.Rank);
        var exact = LoraAdapter.Sum(deltas, f, d);
        double diff = 0, norm = 0;
        for (int i = 0; i < f; i++)
            for (int j = 0; j < d; j++)
            {
                double approx = 0;
                for (int r = 0; r < layer.Rank; r++) approx += layer.A[r * f + i] * layer.B[j * layer.Rank + r];
                diff += Math.Pow(exact[i * d + j] - approx, 2); norm += exact[i * d + j] * exact[i * d + j];
            }
        double recomputed = Math.Sqrt(diff / norm), best = LoraAdapter.BestRankError(exact, f, d, maxRank);
        Assert.True(layer.RelativeError > 0.01, $"reported {layer.RelativeError}: random factors of rank {ranks.Sum()} should not fit rank {maxRank}");
        Assert.True(Math.Abs(layer.RelativeError - recomputed) <= 1e-10, $"reported {layer.RelativeError:r}, recomputed from A, B {recomputed:r}");
        Assert.True(Math.Abs(layer.RelativeError - best) <= 1e-10, $"reported {layer.RelativeError:r}, Eckart–Young {best:r}");
    }

    [Fact]
    public void A_folder_without_active_weight_edits_and_a_non_empty_target_are_refused()
    {
        using var tmp = NewTemp();
        using var m = EditedModel.Create(Gpt2F32, tmp.Sub("edited"));
        var none = Assert.Throws<JournalException>(() => LoraExport.Export(m, tmp.Sub("adapter"), null));
        Assert.Contains("no active weight edits", none.Message);
        m.Revert(m.Apply([RandomDelta(5, layer: 0)], Record(5)));
        Assert.Contains("no active weight edits", Assert.Throws<JournalException>(() => LoraExport.Export(m, tmp.Sub("adapter"), null)).Message);
        Assert.False(Directory.Exists(tmp.Sub("adapter")));
        m.Apply([RandomDelta(6, layer: 0)], Record(6));
        Directory.CreateDirectory(tmp.Sub("full"));
        File.WriteAllText(Path.Combine(tmp.Sub("full"), "x"), "");
        Assert.Contains("not empty", Assert.Throws<IOException>(() => LoraExport.Export(m, tmp.Sub("full"), null)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => LoraExport.Export(m, tmp.Sub("adapter"), 0));
    }
}
