
namespace Palimpsest.Tests.Cli;

public class CliValidateTests
{
    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void Validate_compares_every_layer_and_the_logits_and_passes_for_the_simd_backend(string arch)
    {
        var r = CliRunner.Run("validate", CliRunner.Fixture(arch), "--backend", "cpu-f32", "--tokens", "13");
        Assert.Equal(0, r.Code);
        Assert.Contains("embeddings", r.Out);
        Assert.Contains("block 3", r.Out);
        Assert.Contains("final norm", r.Out);
        Assert.Contains("logits", r.Out);
        Assert.Contains("all inside tolerance", r.Out);
        Assert.DoesNotContain(" NO", r.Out);
    }

    [Fact]
    public void Validate_on_cuda_without_a_device_is_one_error_line()
    {
        if (Palimpsest.Cuda.Interop.Cuda.Probe().Available) Assert.Skip("a CUDA device is present; the no-device path cannot be exercised here");
        var r = CliRunner.Run("validate", CliRunner.Fixture("gpt2"), "--backend", "cuda");
        CliRunner.AssertBadInput(r, "no CUDA device", "--backend cpu-f32");
        // without --backend a machine without a GPU validates what it has: the CPU backend
        var d = CliRunner.Run("validate", CliRunner.Fixture("gpt2"), "--tokens", "5");
        Assert.True(d.Code == 0, d.ToString());
        Assert.Contains("cpu-f32 vs cpu-f64", d.Out);
    }

    [Fact]
    public void Validate_refuses_a_narrow_dtype_on_the_cpu()
    {
        var r = CliRunner.Run("validate", CliRunner.Fixture("gpt2"), "--backend", "cpu-f32", "--dtype", "fp16");
        CliRunner.AssertBadInput(r, "--dtype");
    }
}
