using System.Buffers.Binary;
using System.Text;
using Palimpsest.Models;

namespace Palimpsest.Tests.Models;

/// <summary>Reading real checkpoints: the test fixtures and the shared fp16 models. The expected
/// values were read independently with Python's struct module.</summary>
public class SafetensorsFileTests
{
    private static string Fixture(params string[] p) => Path.Combine([AppContext.BaseDirectory, "fixtures", .. p]);

    [Fact]
    public void ReadsGpt2FixtureWeights()
    {
        using var f = SafetensorsFile.Open(Fixture("gpt2", "model.safetensors"));
        Assert.Equal("pt", f.Metadata["format"]);
        var wte = f.Info("transformer.wte.weight");
        Assert.Equal("F32", wte.DType);
        Assert.Equal([1000, 64], wte.Shape);
        Assert.Equal(816640, wte.Begin);
        Assert.Equal(1072640, wte.End);
        var data = f.ReadF32("transformer.wte.weight");
        Assert.Equal(64000, data.Length);
        Assert.Equal(-0.12204767018556595f, data[0]);
        Assert.Equal(-0.060018543154001236f, data[1]);
        var host = f.ReadHost("transformer.wte.weight");
        Assert.Equal([1000, 64], host.Shape);
        Assert.Equal(data, host.F32);
        Assert.Equal([64, 192], f.Info("transformer.h.0.attn.c_attn.weight").Shape);
        Assert.True(f.Contains("transformer.h.0.ln_1.bias"));
        Assert.False(f.Contains("__metadata__"));
    }

    [Fact]
    public void ReadsGpt2Reference()
    {
        using var f = SafetensorsFile.Open(Fixture("gpt2", "reference.safetensors"));
        var logits = f.Info("logits");
        Assert.Equal("F64", logits.DType);
        Assert.Equal([3, 12, 1000], logits.Shape);
        var ids = f.Info("input_ids");
        Assert.Equal("I64", ids.DType);
        Assert.Equal([3, 12], ids.Shape);
        Assert.Equal([848L, 487, 301, 544, 358, 979, 442, 515, 960, 511, 250, 521], f.ReadI64("input_ids")[..12]);
        var l = f.ReadF64("logits");
        Assert.Equal(-1.0067955270178526, l[0]);
        Assert.Equal(0.12443021268942421, l[1]);
        Assert.Equal(-0.1501404614841561, l[2]);
        var host = f.ReadHost("logits");
        Assert.NotNull(host.F64);
        Assert.Equal(l, host.F64);
        // ReadF32 of an F64 tensor rounds each value.
        Assert.Equal((float)l[1], f.ReadF32("logits")[1]);
    }

    [Fact]
    public void ReadingWithTheWrongKindNamesTheTensor()
    {
        var path = Fixture("gpt2", "reference.safetensors");
        using var f = SafetensorsFile.Open(path);
        var e = Assert.Throws<ModelFormatException>(() => f.ReadF32("input_ids"));
        Assert.Contains(path, e.Message);
        Assert.Contains("'input_ids'", e.Message);
        var e2 = Assert.Throws<ModelFormatException>(() => f.ReadI64("logits"));
        Assert.Contains("'logits'", e2.Message);
        Assert.Throws<ArgumentException>(() => f.ReadF32("logits", new float[5]));
    }

    [Fact]
    public void OpensSharedFp16Model()
    {
        string? shared = StTestFiles.SharedDir();
        if (shared is null) Assert.Skip("../shared (beside the repository) is not present; the shared fp16 models live there");
        using var set = SafetensorsSet.OpenFolder(Path.Combine(shared, "models", "cf5k-gpt2-d128-l6"));
        var info = set.Info("transformer.wte.weight");
        Assert.Equal("F16", info.DType);
        Assert.Equal([50257, 128], info.Shape);
        var wte = set.ReadF32("transformer.wte.weight");
        Assert.Equal(-0.062255859375f, wte[0]);
        Assert.Equal(0.14599609375f, wte[1]);
        Assert.Equal(-0.053680419921875f, wte[2]);
        double sum = 0;
        foreach (var x in wte) sum += x;
        Assert.True(Math.Abs(sum - -29535.617438435555) < 1e-6, $"sum {sum:R}, python says -29535.617438435555");
        Assert.All(set.Names, n => Assert.Equal("F16", set.Info(n).DType));
    }

    [Fact]
    public void DisposedFileRefusesReads()
    {
        var f = SafetensorsFile.Open(Fixture("gpt2", "model.safetensors"));
        f.Dispose();
        f.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => f.ReadF32("transformer.wte.weight"));
    }
}

/// <summary>Helpers for the safetensors tests: temp folders, hand-made files, the shared folder.</summary>
internal static class StTestFiles
{
    /// <summary>../shared beside the repository root (the folder holding Engine.sln), or null.</summary>
    public static string? SharedDir()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
        {
            if (File.Exists(Path.Combine(d.FullName, "Engine.sln")))
            {
                var s = Path.Combine(d.Parent?.FullName ?? d.FullName, "shared");
                return Directory.Exists(s) ? s : null;
            }
        }
        return null;
    }

    /// <summary>A file with the given header JSON (unpadded) followed by dataBytes zero bytes.</summary>
    public static void WriteRaw(string path, string headerJson, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(headerJson);
        var b = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(b, (ulong)h.Length);
        h.CopyTo(b, 8);
        File.WriteAllBytes(path, b);
    }
}

/// <summary>A fresh temporary folder, deleted on dispose.</summary>
internal sealed class StTempDir : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("palimpsest-st-").FullName;
    public string this[string name] => Path.Combine(Dir, name);
    public void Dispose() { try { Directory.Delete(Dir, recursive: true); } catch (IOException) { } }
}
