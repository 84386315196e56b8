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
