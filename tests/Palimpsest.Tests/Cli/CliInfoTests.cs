namespace Palimpsest.Tests.Cli;

public sealed class CliInfoTests
{
    /// <summary>The value printed after <paramref name="key"/> on its "key  value" line.</summary>
    private static string Field(string output, string key)
    {
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith(key + " "));
        Assert.True(line is not null, $"no '{key}' line in\n{output}");
        return line![key.Length..].Trim();
    }

    [Fact]
    public void Info_Gpt2Fixture_ShowsLayersDModelHeadsVocab()
    {
        var r = CliRunner.Run("info", CliRunner.Fixture("gpt2"));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Equal("", r.Err);
        Assert.Equal("4", Field(r.Out, "layers"));
        Assert.Equal("64", Field(r.Out, "d_model"));
        Assert.StartsWith("4 ", Field(r.Out, "heads"));
        Assert.Equal("1,000", Field(r.Out, "vocab"));
        Assert.Equal("64", Field(r.Out, "context"));
        Assert.Contains("GPT-2", Field(r.Out, "tokenizer"));
    }

    [Fact]
    public void Info_LlamaFixture_ShowsGroupedQueryHeadsAndNoTokenizer()
    {
        var r = CliRunner.Run("info", CliRunner.Fixture("llama"));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("2 key/value heads", Field(r.Out, "heads"));
        Assert.StartsWith("none usable", Field(r.Out, "tokenizer"));
    }

    [Theory]
    [InlineData("swa/mistral", "64 (sliding_window 4 on every layer)")]
    [InlineData("swa/qwen2", "64 (sliding_window 3 on layers 1-2)")]
    public void Info_names_the_sliding_window_and_its_layers(string fixture, string context)
    {
        var r = CliRunner.Run("info", CliRunner.Fixture(fixture));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Equal(context, Field(r.Out, "context"));
    }
}

/// <summary>`random-model` writes a loadable folder; `info` says how the CPU backend will store its weights under --weights; `generate` runs on it in place and widened.</summary>
public sealed class CliRandomModelTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "palimpsest-random-model-" + Guid.NewGuid().ToString("N"));

    public void Dispose() { if (Directory.Exists(_dir)) Directory.Delete(_dir, recursive: true); }

    [Fact]
    public void Random_bf16_model_is_stored_in_place_on_the_cpu_and_generates_the_same_ids_widened()
    {
        Directory.CreateDirectory(_dir);
        string cfg = Path.Combine(_dir, "config.json"), model = Path.Combine(_dir, "m");
        File.WriteAllText(cfg, """{ "model_type": "llama", "hidden_size": 32, "intermediate_size": 45, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 97, "max_position_embeddings": 64, "tie_word_embeddings": false }""");
        var w = CliRunner.Run("random-model", "--config", cfg, "--out", model, "--dtype", "bf16", "--seed", "4", "--scale", "0.5");
        Assert.True(w.Code == 0, w.ToString());
        var info = CliRunner.Run("info", model);
        Assert.True(info.Code == 0, info.ToString());
        Assert.StartsWith("BF16 x", info.Out.Split('\n').First(l => l.StartsWith("weights ")).Substring("weights".Length).Trim());
        Assert.Contains("read in place from the memory map", info.Out);
        var f32 = CliRunner.Run("info", model, "--weights", "f32");
        Assert.Contains("float32 copies of every weight", f32.Out);
        var inPlace = CliRunner.Run("generate", model, "--ids", "1,5,9", "--max-tokens", "6");
        var widened = CliRunner.Run("generate", model, "--ids", "1,5,9", "--max-tokens", "6", "--weights", "f32");
        Assert.True(inPlace.Code == 0 && widened.Code == 0, inPlace + "\n" + widened);
        Assert.Equal(widened.Out, inPlace.Out);
    }
}
