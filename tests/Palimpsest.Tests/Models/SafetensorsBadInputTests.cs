using System.Buffers.Binary;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Models;

/// <summary>Every malformed input fails at open (or at the read) with one line that names the
/// file and the tensor or field. Bad files are made here, in a temp folder.</summary>
public sealed class SafetensorsBadInputTests : IDisposable
{
    private readonly StTempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    private static void AssertOneLine(ModelFormatException e, string file, string what)
    {
        Assert.Contains(file, e.Message);
        Assert.Contains(what, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.DoesNotContain('\r', e.Message);
    }

    private ModelFormatException OpenBad(string header, int dataBytes, out string path)
    {
        path = _tmp["bad.safetensors"];
        StTestFiles.WriteRaw(path, header, dataBytes);
        string p = path;
        return Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(p));
    }

    [Fact]
    public void ShorterThanTheLengthPrefix()
    {
        string path = _tmp["short.safetensors"];
        File.WriteAllBytes(path, [1, 2, 3, 4, 5]);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path));
        AssertOneLine(e, path, "header length");
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void TruncatedFile()
    {
        // A valid file cut in the middle of its last tensor.
        string path = _tmp["cut.safetensors"];
        SafetensorsWriter.Write(path, [("a", new HostTensor([4], new float[4]), "F32"), ("b", new HostTensor([8], new float[8]), "F32")]);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^10]);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path));
        AssertOneLine(e, path, "tensor 'b'");
        Assert.Contains("data_offsets", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void HeaderLengthBeyondTheFile()
    {
        string path = _tmp["long.safetensors"];
        var b = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(b, 1000);
        File.WriteAllBytes(path, b);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path));
        AssertOneLine(e, path, "header length 1000");
    }

    [Fact]
    public void AbsurdHeaderLength()
    {
        string path = _tmp["absurd.safetensors"];
        var b = new byte[64];
        BinaryPrimitives.WriteUInt64LittleEndian(b, ulong.MaxValue - 3);
        File.WriteAllBytes(path, b);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path));
        AssertOneLine(e, path, "header length");
        Assert.Contains("absurd", e.Message);
    }

    [Fact]
    public void BadJsonHeader()
    {
        var e = OpenBad("{\"a\": {\"dtype\": \"F32\",\n\n \"shape\": [1], ", 4, out var path);
        AssertOneLine(e, path, "header is not valid JSON");
    }

    [Fact]
    public void HeaderNotAnObject()
    {
        var e = OpenBad("[1, 2, 3]", 0, out var path);
        AssertOneLine(e, path, "header is not a JSON object");
    }

    [Fact]
    public void UnknownDtype()
    {
        var e = OpenBad("""{"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}""", 2, out var path);
        AssertOneLine(e, path, "tensor 'w'");
        Assert.Contains("dtype", e.Message);
        Assert.Contains("F8_E4M3", e.Message);
    }

    [Fact]
    public void OffsetsOutsideTheData()
    {
        var e = OpenBad("""{"w": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}""", 16, out var path);
        AssertOneLine(e, path, "tensor 'w'");
        Assert.Contains("data_offsets", e.Message);
    }

    [Fact]
    public void OverlappingTensors()
    {
        var e = OpenBad("""
            {"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
             "b": {"dtype": "F32", "shape": [2], "data_offsets": [24, 32]},
             "c": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}
            """, 32, out var path);
        AssertOneLine(e, path, "overlap");
        Assert.Contains("tensor 'c'", e.Message);
        Assert.Contains("tensor 'a'", e.Message);
    }

    [Fact]
    public void GapsBetweenTensorsAreAllowed()
    {
        string path = _tmp["gaps.safetensors"];
        StTestFiles.WriteRaw(path, """
            {"a": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
             "e": {"dtype": "F32", "shape": [0], "data_offsets": [8, 8]},
             "b": {"dtype": "I8", "shape": [3], "data_offsets": [20, 23]}}
            """, 30);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(new float[2], f.ReadF32("a"));
        Assert.Empty(f.ReadF32("e"));
        Assert.Equal(new long[3], f.ReadI64("b"));
    }

    [Fact]
    public void ByteLengthNotMatchingTheShape()
    {
        var e = OpenBad("""{"w": {"dtype": "F16", "shape": [3, 2], "data_offsets": [0, 10]}}""", 16, out var path);
        AssertOneLine(e, path, "tensor 'w'");
        Assert.Contains("10 bytes", e.Message);
        Assert.Contains("needs 12", e.Message);
    }

    [Theory]
    [InlineData("""{"w": {"shape": [1], "data_offsets": [0, 4]}}""", "'dtype' is missing")]
    [InlineData("""{"w": {"dtype": 5, "shape": [1], "data_offsets": [0, 4]}}""", "'dtype' must be a string")]
    [InlineData("""{"w": {"dtype": "F32", "data_offsets": [0, 4]}}""", "'shape' is missing")]
    [InlineData("""{"w": {"dtype": "F32", "shape": "1", "data_offsets": [0, 4]}}""", "'shape' must be an array")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}""", "'shape': item 0 is negative")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [1.5], "data_offsets": [0, 4]}}""", "'shape': item 0 is not an integer")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [1]}}""", "'data_offsets' is missing")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 8]}}""", "'data_offsets' must have 2 items")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [0], "data_offsets": [4, 0]}}""", "begin 4 > end 0")]
    [InlineData("""{"w": [1, 2]}""", "entry must be an object")]
    [InlineData("""{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}""", "appears twice")]
    public void MalformedEntryNamesTensorAndField(string header, string expected)
    {
        var e = OpenBad(header, 8, out var path);
        AssertOneLine(e, path, "tensor 'w'");
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MetadataMustHoldStrings()
    {
        var e = OpenBad("""{"__metadata__": {"format": 1}}""", 0, out var path);
        AssertOneLine(e, path, "'__metadata__.format'");
    }

    [Fact]
    public void ControlCharactersInNamesKeepTheMessageOneLine()
    {
        var e = OpenBad("""{"w\nx": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}""", 1, out var path);
        AssertOneLine(e, path, @"tensor 'w\u000ax'");
    }

    [Fact]
    public void MissingTensor()
    {
        string path = _tmp["ok.safetensors"];
        SafetensorsWriter.Write(path, [("a", new HostTensor([1], new float[1]), "F32")]);
        using var f = SafetensorsFile.Open(path);
        var e = Assert.Throws<ModelFormatException>(() => f.Info("nope"));
        AssertOneLine(e, path, "tensor 'nope' not found");
        Assert.Throws<ModelFormatException>(() => f.ReadF32("nope"));
    }

    [Fact]
    public void MissingFile()
    {
        string path = _tmp["absent.safetensors"];
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsFile.Open(path));
        AssertOneLine(e, path, "not found");
    }

    [Fact]
    public void MissingFolder()
    {
        string dir = _tmp["no-such-model"];
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsSet.OpenFolder(dir));
        AssertOneLine(e, dir, "folder not found");
    }

    [Fact]
    public void FolderWithoutWeights()
    {
        string dir = Directory.CreateDirectory(_tmp["empty-model"]).FullName;
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsSet.OpenFolder(dir));
        AssertOneLine(e, dir, "no model.safetensors or model.safetensors.index.json");
    }

    [Fact]
    public void ShardedIndexNamingAMissingShard()
    {
        string dir = Directory.CreateDirectory(_tmp["sharded"]).FullName;
        SafetensorsWriter.Write(Path.Combine(dir, "model-00001-of-00002.safetensors"), [("a", new HostTensor([1], new float[1]), "F32")]);
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), """
            {"metadata": {"total_size": 8}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
            """);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsSet.OpenFolder(dir));
        AssertOneLine(e, Path.Combine(dir, "model.safetensors.index.json"), "shard 'model-00002-of-00002.safetensors'");
        Assert.Contains("tensor 'b'", e.Message);
    }

    [Fact]
    public void ShardedIndexNamingATensorTheShardLacks()
    {
        string dir = Directory.CreateDirectory(_tmp["sharded2"]).FullName;
        string shard = Path.Combine(dir, "s1.safetensors");
        SafetensorsWriter.Write(shard, [("a", new HostTensor([1], new float[1]), "F32")]);
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"), """{"weight_map": {"a": "s1.safetensors", "z": "s1.safetensors"}}""");
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsSet.OpenFolder(dir));
        AssertOneLine(e, shard, "tensor 'z' not found");
    }

    [Theory]
    [InlineData("{\"weight_map\": ", "not valid JSON")]
    [InlineData("""{"metadata": {}}""", "field 'weight_map' is missing")]
    [InlineData("""{"weight_map": {"a": 3}}""", "field 'weight_map.a' must be a string")]
    [InlineData("""{"weight_map": {"a": "../x.safetensors"}}""", "field 'weight_map.a': shard '../x.safetensors' is not a file name")]
    public void MalformedIndex(string json, string expected)
    {
        string dir = Directory.CreateDirectory(_tmp["badindex"]).FullName;
        string index = Path.Combine(dir, "model.safetensors.index.json");
        File.WriteAllText(index, json);
        var e = Assert.Throws<ModelFormatException>(() => SafetensorsSet.OpenFolder(dir));
        AssertOneLine(e, index, expected);
    }
}
