using Palimpsest.Journal;
using Xunit;

namespace Palimpsest.Tests.Journal;

public class RawCheckpointTests
{
    /// <summary>
    /// The streamed rewrite (chunked copy of unreplaced tensors) writes the same bytes as the
    /// whole-file one it replaced (read every tensor, swap the replaced ones' data, write), over
    /// tensors smaller than, equal to and larger than a chunk, in every stored dtype, and yields
    /// between chunks at least once per chunk copied.
    /// </summary>
    [Fact]
    public void Rewrite_streams_the_same_bytes_as_reading_and_writing_the_whole_file()
    {
        using var tmp = JournalFixtures.NewTemp();
        var rng = new Random(7);
        int chunkF32 = RawCheckpoint.CopyChunk / 4;
        (string Name, string DType, int[] Shape)[] specs =
        [
            ("a.small", "F32", [3, 5]), ("b.exact", "F32", [chunkF32 / 64, 64]), ("c.big", "F32", [chunkF32 / 100 + 1, 100]),
            ("d.half", "F16", [97, 33]), ("e.bf", "BF16", [1031, 257]), ("f.wide", "F64", [7, 11]), ("g.empty", "F32", [0, 4]),
        ];
        var tensors = specs.Select(s =>
        {
            long n = s.Shape.Aggregate(1L, (a, b) => a * b);
            var v = new double[n];
            for (long i = 0; i < n; i++) v[i] = rng.NextDouble() * 2 - 1;
            return new RawTensor(s.Name, s.DType, s.Shape, RawCheckpoint.Encode(v, s.DType));
        }).ToList();
        string source = Path.Combine(tmp.Path, "source.safetensors");
        RawCheckpoint.Write(source, tensors, new Dictionary<string, string> { ["generation"] = "0" });

        foreach (var replace in new[] { Array.Empty<string>(), ["a.small"], ["c.big", "e.bf"], ["b.exact", "d.half", "f.wide"] })
        {
            var replaced = replace.ToDictionary(n => n, n =>
            {
                var t = tensors.Single(t => t.Name == n);
                var v = new double[t.Shape.Aggregate(1L, (a, b) => a * b)];
                for (int i = 0; i < v.Length; i++) v[i] = rng.NextDouble() * 4 - 2;
                return v;
            });
            var meta = new Dictionary<string, string> { ["generation"] = "1", ["note"] = string.Join(",", replace) };

            string whole = Path.Combine(tmp.Path, "whole.safetensors");
            var (read, _) = RawCheckpoint.ReadFile(source);
            for (int i = 0; i < read.Count; i++)
                if (replaced.TryGetValue(read[i].Name, out var w)) read[i] = read[i] with { Data = RawCheckpoint.Encode(w, read[i].DType) };
            RawCheckpoint.Write(whole, read, meta);

            string streamed = Path.Combine(tmp.Path, "streamed.safetensors");
            int yields = 0;
            RawCheckpoint.Rewrite(source, streamed, replaced, _ => meta, () => yields++);

            byte[] expected = File.ReadAllBytes(whole), actual = File.ReadAllBytes(streamed);
            Assert.Equal(expected.Length, actual.Length);
            int first = Enumerable.Range(0, expected.Length).FirstOrDefault(i => expected[i] != actual[i], -1);
            Assert.True(first < 0, $"replacing [{string.Join(",", replace)}]: the streamed file differs from byte {first}");
            long copied = tensors.Where(t => !replaced.ContainsKey(t.Name)).Sum(t => (long)t.Data.Length);
            long chunks = tensors.Where(t => !replaced.ContainsKey(t.Name)).Sum(t => (t.Data.Length + RawCheckpoint.CopyChunk - 1L) / RawCheckpoint.CopyChunk);
            Assert.True(yields >= chunks, $"{yields} yields for {chunks} chunks ({copied} bytes copied)");
        }
    }

    /// <summary>
    /// An edited-model folder's checkpoint is its source folder merged into one file by a chunked copy
    /// (nothing held in memory): from two shards and an index, the same tensors, bytes, dtypes and
    /// order (shard by shard, each in data order) as reading every tensor, and the first shard's metadata.
    /// </summary>
    [Fact]
    public void MergeFolder_copies_every_shard_in_order_with_the_first_metadata()
    {
        using var tmp = JournalFixtures.NewTemp();
        string dir = Path.Combine(tmp.Path, "src");
        Directory.CreateDirectory(dir);
        var rng = new Random(3);
        RawTensor T(string name, string dtype, int[] shape)
        {
            var v = new double[shape.Aggregate(1L, (a, b) => a * b)];
            for (int i = 0; i < v.Length; i++) v[i] = rng.NextDouble() - 0.5;
            return new RawTensor(name, dtype, shape, RawCheckpoint.Encode(v, dtype));
        }
        RawTensor[] first = [T("x", "F32", [5, 3]), T("y", "BF16", [RawCheckpoint.CopyChunk / 2 + 9])], second = [T("z", "F16", [4, 4])];
        string s1 = Path.Combine(dir, "model-00001-of-00002.safetensors"), s2 = Path.Combine(dir, "model-00002-of-00002.safetensors");
        RawCheckpoint.Write(s1, first, new Dictionary<string, string> { ["format"] = "pt", ["from"] = "shard 1" });
        RawCheckpoint.Write(s2, second, new Dictionary<string, string> { ["from"] = "shard 2" });
        File.WriteAllText(Path.Combine(dir, "model.safetensors.index.json"),
            """{"weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00001-of-00002.safetensors", "z": "model-00002-of-00002.safetensors"}}""");

        string target = Path.Combine(tmp.Path, "merged.safetensors");
        RawCheckpoint.MergeFolder(dir, target, m => new Dictionary<string, string>(m) { ["stamp"] = "1" });
        var (merged, meta) = RawCheckpoint.ReadFile(target);
        var expected = first.Concat(second).ToArray();
        Assert.Equal(expected.Select(t => t.Name), merged.Select(t => t.Name));
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.Equal(expected[i].DType, merged[i].DType);
            Assert.Equal(expected[i].Shape, merged[i].Shape);
            Assert.True(expected[i].Data.AsSpan().SequenceEqual(merged[i].Data), $"tensor {expected[i].Name}: bytes differ");
        }
        Assert.Equal("shard 1", meta["from"]);
        Assert.Equal("1", meta["stamp"]);
        Assert.Equal(["x", "y", "z"], RawCheckpoint.ListFolder(dir).Select(t => t.Name));
    }
}
