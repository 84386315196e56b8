using System.Globalization;
using System.Text.RegularExpressions;
using Palimpsest.Models;
using Palimpsest.Tests.Gpu;

namespace Palimpsest.Tests.Cli;

/// <summary>`--device cuda`: a one-line error without a GPU, and the CPU's answers with one.</summary>
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public sealed class CliCudaTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("palimpsest-cli-cuda-").FullName;
    private static readonly string Gpt2 = CliRunner.Fixture("gpt2");

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    [Fact]
    public void DeviceCudaWithoutAGpu_IsOneLineBadInputWithTheProbeReason()
    {
        var probe = global::Palimpsest.Cuda.Interop.Cuda.Probe();
        if (probe.Available) Assert.Skip($"a CUDA device is present ({probe.DeviceName}): the no-device error cannot occur here");
        CliRunner.AssertBadInput(CliRunner.Run("predict", Gpt2, " the of and to", "--device", "cuda"), "--device cuda", "no CUDA device");
    }

    [Fact]
    public void EveryModelLoadingCommand_TakesDeviceCuda_AndWithoutAGpuSaysSoInOneLineBeforeCreatingAnything()
    {
        var probe = global::Palimpsest.Cuda.Interop.Cuda.Probe();
        if (probe.Available) Assert.Skip($"a CUDA device is present ({probe.DeviceName}): the no-device error cannot occur here");
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("edited");
        string[][] commands =
        [
            ["edit", m.Model, "--layers", "1", "--subject", "Lyon", "--prompt", "{} is in", "--target", "Manila", "--stats-corpus", "facts:" + m.Dataset, "--out", outDir],
            ["eval", m.Model, "--dataset", m.Dataset],
            ["lifelong", m.Model, "--dataset", m.Dataset, "--edits", "1", "--held-out", "1", "--layers", "1", "--stats-corpus", "facts:" + m.Dataset, "--report", m.PathIn("report")],
            ["trace", m.Model, "--prompt", "The mother tongue of Danielle Darrieux is", "--subject", "Danielle Darrieux"],
            ["stats", m.Model, "--layers", "1", "--corpus", "facts:" + m.Dataset],
            ["bench-edits", m.Model, "--methods", "ultraedit", "--layers", "1", "--edits", "1", "--dataset", m.Dataset, "--out", m.PathIn("bench")],
            ["interference", m.Model, "--dataset", m.Dataset, "--edits", "1", "--layers", "1", "--stats-corpus", "facts:" + m.Dataset, "--report", m.PathIn("int")],
            ["demo", m.Model, "--subject", "Danielle Darrieux"],
            ["superposition", m.Model, "--facts", m.Dataset, "--stats-corpus", "facts:" + m.Dataset, "--report", m.PathIn("sup")],
        ];
        foreach (var args in commands)
            CliRunner.AssertBadInput(CliRunner.Run([.. args, "--device", "cuda"]), "--device cuda", "no CUDA device");
        Assert.False(Directory.Exists(outDir), "edit created its folder before finding there is no GPU");
        Assert.False(Directory.Exists(m.PathIn("report")));
        // --dtype is the GPU's weight storage: without cuda it is a usage error
        CliRunner.AssertBadInput(CliRunner.Run("eval", m.Model, "--dataset", m.Dataset, "--dtype", "fp16"), "--dtype fp16", "--device cuda");
    }

    [Fact]
    [Trait(Gpu.Gpu.Trait, Gpu.Gpu.TraitValue)]
    public void DeviceCuda_PredictsLikeTheCpuAndDumpsWithinFloat32Tolerance()
    {
        Gpu.Gpu.SkipIfUnavailable();
        var cpu = CliRunner.Run("predict", Gpt2, " the of and to", "--top", "5");
        var gpu = CliRunner.Run("predict", Gpt2, " the of and to", "--top", "5", "--device", "cuda");
        Assert.True(gpu.Code == 0, gpu.ToString());
        Assert.Contains("cuda-f32", gpu.Out);
        var (c, g) = (Table(cpu.Out), Table(gpu.Out));
        Assert.True(c.Length == 5, cpu.ToString());
        Assert.Equal(c.Select(r => r.Id), g.Select(r => r.Id));
        // Printed with 4 decimals: float32 on both sides may differ by one unit in the last place.
        for (int i = 0; i < c.Length; i++) Assert.True(Math.Abs(c[i].Prob - g[i].Prob) <= 1.5e-4, $"rank {i + 1}: cpu {c[i].Prob} vs cuda {g[i].Prob}");

        using var reference = SafetensorsFile.Open(Path.Combine(Gpt2, "reference.safetensors"));
        long[] ids = reference.ReadI64("input_ids")[..12];
        string path = Path.Combine(_tmp, "cuda.safetensors");
        var run = CliRunner.Run("run", Gpt2, "--ids", string.Join(",", ids), "--dump", path, "--device", "cuda");
        Assert.True(run.Code == 0, run.ToString());
        using var f = SafetensorsFile.Open(path);
        Num.AssertClose(f.ReadF64("logits"), reference.ReadF64("logits").AsSpan(0, 12 * 1000), 1e-4, "logits on cuda");

        var gen = CliRunner.Run("generate", Gpt2, "--ids", "262,286,290,284", "--max-tokens", "6", "--device", "cuda");
        var genCpu = CliRunner.Run("generate", Gpt2, "--ids", "262,286,290,284", "--max-tokens", "6");
        Assert.True(gen.Code == 0, gen.ToString());
        Assert.Equal(genCpu.Out, gen.Out);
    }

    /// <summary>(id, probability) of each row of predict's table.</summary>
    private static (int Id, double Prob)[] Table(string output) =>
        Regex.Matches(output, @"^\s*\d+  "".*""\s+(\d+)\s+(\S+)", RegexOptions.Multiline)
            .Select(m => (int.Parse(m.Groups[1].Value), double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)))
            .ToArray();
}
