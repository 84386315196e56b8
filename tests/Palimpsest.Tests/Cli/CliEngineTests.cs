using System.Text.RegularExpressions;
using Palimpsest.Models;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Cli;

/// <summary>The commands that run the transformer, on the tiny GPT-2 fixture (vocab 1000, context 64).</summary>
public sealed class CliEngineTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("palimpsest-cli-run-").FullName;
    private static readonly string Gpt2 = CliRunner.Fixture("gpt2");

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    /// <summary>(rank, id, prob) of each table row in predict's output.</summary>
    private static List<(int Rank, int Id, double Prob)> Rows(string output) =>
        Regex.Matches(output, @"^\s*(\d+)  ("".*""|#\d+)\s+(\d+)\s+(\S+)\s+\S+$", RegexOptions.Multiline)
            .Select(m => (int.Parse(m.Groups[1].Value), int.Parse(m.Groups[3].Value), double.Parse(m.Groups[4].Value, System.Globalization.CultureInfo.InvariantCulture)))
            .ToList();

    [Fact]
    public void Predict_PromptWithSmallIds_PrintsFiveRankedRows()
    {
        // " the of and to" = 262, 286, 290, 284 in GPT-2: all inside the fixture's 1000 ids.
        var r = CliRunner.Run("predict", Gpt2, " the of and to");
        Assert.True(r.Code == 0, r.ToString());
        Assert.Equal("", r.Err);
        var rows = Rows(r.Out);
        Assert.True(rows.Count == 5, r.ToString());
        Assert.Equal([1, 2, 3, 4, 5], rows.Select(x => x.Rank));
        for (int i = 1; i < 5; i++) Assert.True(rows[i].Prob <= rows[i - 1].Prob, r.Out);
        Assert.All(rows, x => Assert.InRange(x.Id, 0, 999));
        Assert.Contains("(4 tokens", r.Out);
    }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("gptj")]
    [InlineData("gpt_neox")]
    [InlineData("llama")]
    public void Predict_Top1_IsTheArgmaxOfTransformersLogits(string fixture)
    {
        string dir = CliRunner.Fixture(fixture);
        using var reference = SafetensorsFile.Open(Path.Combine(dir, "reference.safetensors"));
        long[] ids = reference.ReadI64("input_ids");
        double[] logits = reference.ReadF64("logits"); // [3, 12, 1000]
        for (int seq = 0; seq < 3; seq++)
        {
            var prompt = ids.Skip(seq * 12).Take(12);
            var row = logits.AsSpan((seq * 12 + 11) * 1000, 1000);
            int expected = row.IndexOf(System.Linq.Enumerable.Max(row.ToArray()));
            var r = CliRunner.Run("predict", dir, "--ids", string.Join(",", prompt), "--top", "3");
            Assert.True(r.Code == 0, r.ToString());
            Assert.Equal(expected, Rows(r.Out)[0].Id);
        }
    }

    [Fact]
    public void RunDump_WritesIdsLogitsAndHiddenStatesWithTheirShapes()
    {
        string path = Path.Combine(_tmp, "out.safetensors");
        var r = CliRunner.Run("run", Gpt2, "--ids", "1,2,3", "--dump", path);
        Assert.True(r.Code == 0, r.ToString());
        using var f = SafetensorsFile.Open(path);
        Assert.Equal([3], f.Info("input_ids").Shape);
        Assert.Equal([1L, 2, 3], f.ReadI64("input_ids"));
        Assert.Equal([3, 1000], f.Info("logits").Shape);
        Assert.Equal([5, 3, 64], f.Info("hidden_states").Shape);
        // The default backend is the fast float32 one.
        Assert.Equal("F32", f.Info("logits").DType);
        Assert.Equal("F32", f.Info("hidden_states").DType);
    }

    [Fact]
    public void RunDumpF32_AgreesWithTransformersToFloat32Tolerance()
    {
        using var reference = SafetensorsFile.Open(Path.Combine(Gpt2, "reference.safetensors"));
        long[] ids = reference.ReadI64("input_ids")[12..24]; // sequence 1
        double[] refLogits = reference.ReadF64("logits").AsSpan(12 * 1000, 12 * 1000).ToArray();
        double[] refHidden = reference.ReadF64("hidden_states");  // [5, 3, 12, 64]
        string path = Path.Combine(_tmp, "f32.safetensors");
        var r = CliRunner.Run("run", Gpt2, "--ids", string.Join(",", ids), "--dump", path);
        Assert.True(r.Code == 0, r.ToString());
        using var f = SafetensorsFile.Open(path);
        double[] logits = f.ReadF64("logits"), hidden = f.ReadF64("hidden_states");
        Num.AssertClose(logits, refLogits, 1e-4, "logits");
        for (int l = 0; l < 5; l++)
            Num.AssertClose(hidden.AsSpan(l * 12 * 64, 12 * 64), refHidden.AsSpan((l * 3 + 1) * 12 * 64, 12 * 64), 1e-4, $"hidden_states[{l}]");
    }

    [Fact]
    public void RunDumpF64_MatchesTransformersFloat64Outputs()
    {
        using var reference = SafetensorsFile.Open(Path.Combine(Gpt2, "reference.safetensors"));
        long[] ids = reference.ReadI64("input_ids")[..12];
        double[] refLogits = reference.ReadF64("logits");        // [3, 12, 1000]
        double[] refHidden = reference.ReadF64("hidden_states"); // [5, 3, 12, 64]
        string path = Path.Combine(_tmp, "ref.safetensors");
        var r = CliRunner.Run("run", Gpt2, "--ids", string.Join(",", ids), "--dump", path, "--f64");
        Assert.True(r.Code == 0, r.ToString());

        using var f = SafetensorsFile.Open(path);
        Assert.Equal("F64", f.Info("logits").DType);
        double[] logits = f.ReadF64("logits"), hidden = f.ReadF64("hidden_states");
        Num.AssertClose(logits, refLogits.AsSpan(0, 12 * 1000), 1e-10, "logits");
        // hidden_states [5, 12, 64] (ours, one sequence) vs [5, 3, 12, 64] (reference, sequence 0)
        for (int l = 0; l < 5; l++)
            Num.AssertClose(hidden.AsSpan(l * 12 * 64, 12 * 64), refHidden.AsSpan(l * 3 * 12 * 64, 12 * 64), 1e-10, $"hidden_states[{l}]");
    }

    [Fact]
    public void GenerateGreedy_EqualsRepeatedPredictTop1()
    {
        // Generation reuses a KV cache; repeated full forwards (predict) must choose the same tokens.
        var ids = new List<int> { 262, 286, 290, 284 };
        for (int step = 0; step < 4; step++)
        {
            var p = CliRunner.Run("predict", Gpt2, "--ids", string.Join(",", ids), "--top", "1");
            Assert.True(p.Code == 0, p.ToString());
            ids.Add(Rows(p.Out)[0].Id);
        }
        var g = CliRunner.Run("generate", Gpt2, "--ids", "262,286,290,284", "--max-tokens", "4");
        Assert.True(g.Code == 0, g.ToString());
        var config = ModelConfig.Load(Path.Combine(Gpt2, "config.json"));
        string expected = TokenizerFactory.ForModel(Gpt2, config).Decode(ids.ToArray());
        Assert.Equal(expected + "\n", g.Out);
    }

    [Fact]
    public void GenerateTopK_IsReproducibleForASeedAndVariesAcrossSeeds()
    {
        string[] Args(int seed) => ["generate", Gpt2, " the of and to", "--max-tokens", "12", "--top-k", "50", "--seed", seed.ToString()];
        var a = CliRunner.Run(Args(1));
        var b = CliRunner.Run(Args(1));
        Assert.True(a.Code == 0, a.ToString());
        Assert.Equal(a.Out, b.Out);
        var outputs = Enumerable.Range(2, 4).Select(s => CliRunner.Run(Args(s)).Out).Append(a.Out).Distinct().Count();
        Assert.True(outputs > 1, "five seeds produced identical samples from a near-uniform model");
    }

    [Fact]
    public void GenerateStopsAtTheContextLength()
    {
        // 60 prompt tokens leave room for 4 of the 20 asked for in the fixture's 64 positions: that
        // must stop there, not fail. The llama fixture has no tokenizer, so the output is ids to count.
        string ids = string.Join(",", Enumerable.Repeat("7", 60));
        var g = CliRunner.Run("generate", CliRunner.Fixture("llama"), "--ids", ids, "--max-tokens", "20");
        Assert.True(g.Code == 0, g.ToString());
        Assert.Equal(64, g.Out.Trim().Split(',').Length);
    }

    [Fact]
    public void GenerateOnAModelWithoutTokenizer_PrintsIds()
    {
        // The llama fixture has no tokenizer files: --ids in, ids out (prompt, then 3 new ones).
        var g = CliRunner.Run("generate", CliRunner.Fixture("llama"), "--ids", "1,2,3", "--max-tokens", "3");
        Assert.True(g.Code == 0, g.ToString());
        var ids = g.Out.Trim().Split(',').Select(int.Parse).ToArray();
        Assert.Equal([1, 2, 3], ids[..3]);
        Assert.Equal(6, ids.Length);
        Assert.All(ids, id => Assert.InRange(id, 0, 999));
        // Without --ids there is no way to tokenize a prompt: a bad-input error naming the missing files.
        CliRunner.AssertBadInput(CliRunner.Run("generate", CliRunner.Fixture("llama"), "hello"), "tokenizer.model");
    }
}
