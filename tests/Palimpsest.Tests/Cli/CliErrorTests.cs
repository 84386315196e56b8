using Palimpsest.Cli;

namespace Palimpsest.Tests.Cli;

/// <summary>Every known bad input ends as one error line and exit code 2; these need no forward pass.</summary>
public sealed class CliErrorTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("palimpsest-cli-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    [Fact]
    public void MissingModelFolder_IsBadInputNamingTheFolder()
    {
        string missing = Path.Combine(_tmp, "no-such-model");
        CliRunner.AssertBadInput(CliRunner.Run("info", missing), missing);
        CliRunner.AssertBadInput(CliRunner.Run("predict", missing, "hello"), missing);
    }

    [Fact]
    public void UnknownModelType_IsBadInputNamingConfigAndField()
    {
        string dir = Directory.CreateDirectory(Path.Combine(_tmp, "weird")).FullName;
        File.Copy(Path.Combine(CliRunner.Fixture("gpt2"), "model.safetensors"), Path.Combine(dir, "model.safetensors"));
        string config = File.ReadAllText(Path.Combine(CliRunner.Fixture("gpt2"), "config.json"))
            .Replace("\"model_type\": \"gpt2\"", "\"model_type\": \"mamba\"");
        Assert.Contains("mamba", config);
        File.WriteAllText(Path.Combine(dir, "config.json"), config);
        CliRunner.AssertBadInput(CliRunner.Run("info", dir), "config.json", "model_type", "mamba");
        CliRunner.AssertBadInput(CliRunner.Run("run", dir, "--ids", "1,2"), "config.json", "model_type");
    }

    [Fact]
    public void TokenIdOutsideVocab_IsBadInputNamingVocabSize()
    {
        CliRunner.AssertBadInput(CliRunner.Run("run", CliRunner.Fixture("gpt2"), "--ids", "5000"), "5000", "vocab_size");
    }

    [Fact]
    public void PromptWordOutsideFixtureVocab_IsBadInputNamingTheToken()
    {
        // " mother" is GPT-2 id 2802; the fixture has 1000 embeddings.
        CliRunner.AssertBadInput(CliRunner.Run("predict", CliRunner.Fixture("gpt2"), " the mother"), "2802", "1000");
    }

    [Fact]
    public void PromptLongerThanContext_IsBadInputNamingNPositions()
    {
        // " the" is one token (262); the fixture's context is 64.
        string prompt = string.Concat(Enumerable.Repeat(" the", 70));
        CliRunner.AssertBadInput(CliRunner.Run("predict", CliRunner.Fixture("gpt2"), prompt), "70 tokens", "n_positions");
        string ids = string.Join(",", Enumerable.Repeat("1", 65));
        CliRunner.AssertBadInput(CliRunner.Run("run", CliRunner.Fixture("gpt2"), "--ids", ids), "65 tokens", "64");
    }

    [Theory]
    [InlineData("1,x", "'x'")]
    [InlineData("1,,2", "item 2")]
    [InlineData("-3", "-3")]
    [InlineData("1.5", "'1.5'")]
    public void MalformedIds_AreBadInputNamingTheItem(string ids, string named)
    {
        CliRunner.AssertBadInput(CliRunner.Run("run", CliRunner.Fixture("gpt2"), "--ids", ids), "--ids", named);
    }

    [Fact]
    public void PromptAndIdsTogether_IsBadInput()
    {
        CliRunner.AssertBadInput(CliRunner.Run("predict", CliRunner.Fixture("gpt2"), " the", "--ids", "1"), "--ids");
    }

    [Fact]
    public void NonPositiveOptionValues_AreBadInput()
    {
        CliRunner.AssertBadInput(CliRunner.Run("predict", CliRunner.Fixture("gpt2"), "--ids", "1", "--top", "0"), "--top");
        CliRunner.AssertBadInput(CliRunner.Run("generate", CliRunner.Fixture("gpt2"), "--ids", "1", "--max-tokens", "-1"), "--max-tokens");
        CliRunner.AssertBadInput(CliRunner.Run("generate", CliRunner.Fixture("gpt2"), "--ids", "1", "--top-k", "-2"), "--top-k");
    }

    [Fact]
    public void UnknownCommandOrOption_IsBadInput()
    {
        CliRunner.AssertBadInput(CliRunner.Run("bogus"), "bogus");
        CliRunner.AssertBadInput(CliRunner.Run("info", CliRunner.Fixture("gpt2"), "--frobnicate"), "--frobnicate");
        CliRunner.AssertBadInput(CliRunner.Run("predict", CliRunner.Fixture("gpt2"), "--top", "many"), "many");
    }

    [Fact]
    public void Help_PrintsUsageToStdoutAndSucceeds()
    {
        var r = CliRunner.Run("--help");
        Assert.True(r.Code == 0, r.ToString());
        foreach (var cmd in new[] { "info", "predict", "generate", "run" }) Assert.Contains(cmd, r.Out);
        Assert.Equal("", r.Err);
        // Usage lines name the command, not the host assembly (here the test runner).
        var run = CliRunner.Run("run", "--help");
        Assert.True(run.Code == 0, run.ToString());
        Assert.Contains("palimpsest run <model>", run.Out);
        Assert.Contains("--dump", run.Out);
    }

    [Fact]
    public void UnexpectedFailure_IsExitOneWithOneLineAndNoTrace()
    {
        Exception thrown;
        try { throw new InvalidOperationException("kernel exploded\nsecond line"); }
        catch (Exception e) { thrown = e; }
        var err = new StringWriter { NewLine = "\n" };
        int code = CliErrors.Report(thrown, err, debug: false);
        Assert.Equal(1, code);
        string text = err.ToString();
        Assert.Single(text.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("InvalidOperationException: kernel exploded second line", text);
        Assert.DoesNotContain("   at ", text);

        var debugErr = new StringWriter();
        Assert.Equal(1, CliErrors.Report(thrown, debugErr, debug: true));
        Assert.Contains("   at ", debugErr.ToString());
    }

    [Fact]
    public void TruncatedSafetensors_IsBadInputNamingTheFile()
    {
        string dir = Directory.CreateDirectory(Path.Combine(_tmp, "truncated")).FullName;
        File.Copy(Path.Combine(CliRunner.Fixture("gpt2"), "config.json"), Path.Combine(dir, "config.json"));
        byte[] weights = File.ReadAllBytes(Path.Combine(CliRunner.Fixture("gpt2"), "model.safetensors"));
        File.WriteAllBytes(Path.Combine(dir, "model.safetensors"), weights[..(weights.Length / 2)]);
        CliRunner.AssertBadInput(CliRunner.Run("run", dir, "--ids", "1,2"), "model.safetensors");
        CliRunner.AssertBadInput(CliRunner.Run("info", dir), "model.safetensors");
    }

    [Fact]
    public void DumpIntoAMissingFolder_IsBadInputNamingDump()
    {
        string path = Path.Combine(_tmp, "no-such-dir", "out.safetensors");
        CliRunner.AssertBadInput(CliRunner.Run("run", CliRunner.Fixture("gpt2"), "--ids", "1", "--dump", path), "--dump", "no-such-dir");
    }

    [Fact]
    public void BadDeviceChoices_AreBadInput()
    {
        CliRunner.AssertBadInput(CliRunner.Run("predict", CliRunner.Fixture("gpt2"), " the", "--device", "tpu"), "tpu");
        CliRunner.AssertBadInput(CliRunner.Run("predict", CliRunner.Fixture("gpt2"), " the", "--device", "cuda", "--f64"), "--f64", "--device cuda");
    }
}
