using System.Text;
using System.Text.Json;

namespace Palimpsest.Tests.Tokenization;

/// <summary>
/// A tiny byte-level BPE written to disk in Hugging Face's formats: the 256 byte symbols (ids 0..255,
/// in GPT-2's byte-to-unicode alphabet), a few merges, and &lt;|endoftext|&gt;. Its ids differ from
/// GPT-2's, so a test can tell which tokenizer was used.
/// </summary>
internal static class TinyBpe
{
    public static readonly string[] Merges = ["t h", "th e", "Ġ a", "Ġa n", "Ġan d"];
    public const int The = 257, SpaceAnd = 260, Eos = 261;

    public static Dictionary<string, int> Vocab()
    {
        var v = new Dictionary<string, int>();
        var map = ByteToUnicode();
        for (int b = 0; b < 256; b++) v[map[b]] = b;
        foreach (var m in Merges) v[m.Replace(" ", "")] = v.Count;
        v["<|endoftext|>"] = v.Count;
        return v;
    }

    public static void WriteVocabAndMerges(string folder)
    {
        File.WriteAllText(Path.Combine(folder, "vocab.json"), ToJson(Vocab()));
        File.WriteAllText(Path.Combine(folder, "merges.txt"), "#version: 0.2\n" + string.Join("\n", Merges) + "\n");
    }

    /// <summary>tokenizer.json in the newer layout: merges as [a, b] pairs, &lt;|endoftext|&gt; as an added token.</summary>
    public static void WriteTokenizerJson(string folder, string modelType = "BPE")
    {
        var vocab = Vocab();
        vocab.Remove("<|endoftext|>");
        var merges = string.Join(",", Merges.Select(m => "[" + string.Join(",", m.Split(' ').Select(Str)) + "]"));
        string json = "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":" + Eos + ",\"content\":\"<|endoftext|>\",\"special\":true}]," +
                      "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}," +
                      "\"model\":{\"type\":\"" + modelType + "\",\"vocab\":" + ToJson(vocab) + ",\"merges\":[" + merges + "]}}";
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), json);
    }

    private static string Str(string s) => JsonSerializer.Serialize(s, Palimpsest.Tests.Tokenization.TinyBpeJson.Default.String);

    private static string ToJson(Dictionary<string, int> v) =>
        "{" + string.Join(",", v.Select(kv => Str(kv.Key) + ":" + kv.Value)) + "}";

    /// <summary>GPT-2's reversible map from bytes to printable unicode characters.</summary>
    internal static string[] ByteToUnicode()
    {
        var printable = new List<int>();
        for (int b = '!'; b <= '~'; b++) printable.Add(b);
        for (int b = 0xA1; b <= 0xAC; b++) printable.Add(b);
        for (int b = 0xAE; b <= 0xFF; b++) printable.Add(b);
        var map = new string[256];
        foreach (int b in printable) map[b] = ((char)b).ToString();
        int n = 0;
        for (int b = 0; b < 256; b++) if (map[b] is null) map[b] = ((char)(256 + n++)).ToString();
        return map;
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal partial class TinyBpeJson : System.Text.Json.Serialization.JsonSerializerContext;
