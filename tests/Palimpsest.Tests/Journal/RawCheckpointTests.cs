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
}
