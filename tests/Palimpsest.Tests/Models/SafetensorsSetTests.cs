using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Models;

public sealed class SafetensorsSetTests : IDisposable
{
    private readonly StTempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void ReadsShardsListedInTheIndex()
    {
        string dir = _tmp.Dir;
        var a = new HostTensor([2, 3], new float[] { 1, 2, 3, 4, 5, 6 });
        var b = new HostTensor([2], new double[] { 0.25, -8 });
        var c = new HostTensor([4], new float[] { 0.5f, 1.5f, -2, 3 });
        SafetensorsWriter.Write(Path.Combine(dir, "model-00001-of-00002.safetensors"), [("a", a, "F32"), ("b", b, "F64")]);
        SafetensorsWriter.Write(Path.Combine(dir, "model-00002-of-00002.safetensors"), [("c", c, "BF16")]);
        SafetensorsWriter.Write(Path.Combine(dir, "ids.safetensors"), [("ids", "I32", [2], new byte[] { 5, 0, 0, 0, 255, 255, 255, 255 })]);
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), """
            {"metadata": {"total_size": 56},
             "weight_map": {"c": "model-00002-of-00002.safetensors", "a": "model-00001-of-00002.safetensors",
                            "b": "model-00001-of-00002.safetensors", "ids": "ids.safetensors"}}
            """);
        using var set = SafetensorsSet.OpenFolder(dir);
        Assert.Equal(["c", "a", "b", "ids"], set.Names);
        Assert.Equal(3, set.Files.Count);
        Assert.Equal(a.F32, set.ReadF32("a"));
        Assert.Equal(b.F64, set.ReadHost("b").F64);
        Assert.Equal([0.5f, 1.5f, -2, 3], set.ReadHost("c").F32!);
        Assert.Equal([0.5, 1.5, -2, 3], set.ReadF64("c"));
        Assert.Equal([5L, -1], set.ReadI64("ids"));
        var span = new float[6];
        set.ReadF32("a", span);
        Assert.Equal(a.F32, span);
        Assert.Equal("BF16", set.Info("c").DType);
        Assert.EndsWith("model-00001-of-00002.safetensors", set.FileOf("b").Path);
        Assert.True(set.Contains("ids"));
        Assert.False(set.Contains("d"));
        var e = Assert.Throws<ModelFormatException>(() => set.ReadF32("d"));
        Assert.Contains(dir, e.Message);
        Assert.Contains("tensor 'd' not found", e.Message);
    }

    [Fact]
    public void SingleFileWinsOverAnIndex()
    {
        string dir = _tmp.Dir;
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), [("w", new HostTensor([1], new float[] { 9 }), "F16")]);
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), """{"weight_map": {"w": "missing.safetensors"}}""");
        using var set = SafetensorsSet.OpenFolder(dir);
        Assert.Equal(["w"], set.Names);
        Assert.Equal([9f], set.ReadF32("w"));
    }

    [Fact]
    public void OpensTheGpt2FixtureFolder()
    {
        using var set = SafetensorsSet.OpenFolder(Path.Combine(AppContext.BaseDirectory, "fixtures", "gpt2"));
        Assert.Equal(52, set.Names.Count());
        Assert.Equal([1000, 64], set.Info("transformer.wte.weight").Shape);
        Assert.Single(set.Files);
    }
}
