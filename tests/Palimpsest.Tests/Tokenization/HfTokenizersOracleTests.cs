using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Tokenization;

/// <summary>
/// Our reading of Llama 3, Qwen2 and Mistral tokenizer.json files against Hugging Face's own: the
/// tokenizers crate (0.22.2, what transformers' fast tokenizers run) through Tokenizers.DotNet reads
/// the same files (built by <see cref="TinyHfTokenizers"/>), and every text gives the same ids.
/// <see cref="HfTokenizerFileTests"/> checks the files' rules against our naive reading of them; this
/// checks that we and Hugging Face read the rules the same way.
/// </summary>
public sealed class HfTokenizersOracleTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("palimpsest-hforacle-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    public static readonly TheoryData<string> Families = new("llama3", "qwen2", "mistral-first", "mistral-always", "mistral-llama2");

    [Theory]
    [MemberData(nameof(Families))]
    public void Ids_and_texts_equal_Hugging_Face_tokenizers_on_fixed_and_random_texts(string family)
    {
        SkipOffLinuxX64();
        JsonObject json = family switch
        {
            "llama3" => TinyHfTokenizers.Llama3(),
            "qwen2" => TinyHfTokenizers.Qwen2(),
            _ => TinyHfTokenizers.Mistral(family["mistral-".Length..]),
        };
        string dir = Directory.CreateDirectory(Path.Combine(_tmp, family)).FullName;
        TinyHfTokenizers.Write(dir, json);
        var ours = TokenizerFactory.ForModel(dir, HfTokenizerFileTests.Config());
        using var hf = new Tokenizers.DotNet.Tokenizer(Path.Combine(dir, "tokenizer.json"));
        Assert.Equal(TinyHfTokenizers.FirstAdded, TinyHfTokenizers.ByteLevelVocab().Count); // added ids follow the vocabulary, as shipped files have them
        var addedTokens = json["added_tokens"]!.AsArray();
        string[] added = [.. addedTokens.Select(t => (string)t!["content"]!)];
        var special = addedTokens.Select(t => (int)t!["id"]!).ToHashSet();
        int compared = 0;
        foreach (var text in HfTokenizerFileTests.FixedTexts.Concat(HfTokenizerFileTests.RandomTexts(added, 500, seed: family.Length)))
        {
            // Tokenizers.DotNet encodes with the file's post-processor (special tokens added): our prompt ids
            var raw = hf.Encode(text);
            var theirs = raw.Select(x => (int)x).ToArray();
            var mine = ours.EncodePrompt(text);
            AssertSameIds(family, text, theirs, mine);
            // Tokenizers.DotNet decodes with skip_special_tokens; ours keeps them (transformers' default), so compare without
            var plain = mine.Where(id => !special.Contains(id)).ToArray();
            Assert.True(hf.Decode(raw) == ours.Decode(plain), $"{family} \"{Escape(text)}\": Hugging Face decodes \"{Escape(hf.Decode(raw))}\", ours \"{Escape(ours.Decode(plain))}\"");
            compared++;
        }
        Assert.Equal(HfTokenizerFileTests.FixedTexts.Length + 500, compared);
    }

    /// <summary>
    /// A real vocabulary: cl100k_base's 100,256 tokens (Llama 3's first 100,000 are these; its other 28,000 cannot be
    /// downloaded here) written in Llama 3's tokenizer.json layout as Hugging Face's tiktoken converter writes it —
    /// each token's bytes in the byte-level alphabet with its rank as id, a merge per token of two or more bytes
    /// (the pair that BPE over the lower ranks leaves), Llama 3's regex, ignore_merges, its added tokens after the
    /// vocabulary and the BOS template. Hugging Face and we read the 100,256 merges to the same ids.
    /// </summary>
    [Fact]
    public void A_real_100k_vocabulary_in_Llama_3s_layout_gives_Hugging_Faces_ids()
    {
        SkipOffLinuxX64();
        var ranks = Cl100kRanks();
        Assert.Equal(100256, ranks.Count);
        var map = TinyBpe.ByteToUnicode();
        string Sym(byte[] b) => string.Concat(b.Select(x => map[x]));
        var vocab = new JsonObject();
        var byRank = ranks.OrderBy(kv => kv.Value).ToArray();
        foreach (var (bytes, rank) in byRank) vocab[Sym(bytes)] = rank;
        var merges = new JsonArray();
        foreach (var (bytes, rank) in byRank)
        {
            if (bytes.Length < 2) continue;
            var (left, right) = LastMerge(bytes, rank, ranks);
            merges.Add(new JsonArray(Sym(left), Sym(right)));
        }
        var json = TinyHfTokenizers.Llama3();
        json["model"]!["vocab"] = vocab;
        json["model"]!["merges"] = merges;
        json["added_tokens"] = TinyHfTokenizers.AddedTokens(TinyHfTokenizers.Llama3Added, first: ranks.Count);
        json["post_processor"]!["processors"]![1] = TinyHfTokenizers.Template("<|begin_of_text|>", ranks.Count);
        string dir = Directory.CreateDirectory(Path.Combine(_tmp, "cl100k-llama3")).FullName;
        TinyHfTokenizers.Write(dir, json);
        var ours = TokenizerFactory.ForModel(dir, HfTokenizerFileTests.Config(vocab: ranks.Count + TinyHfTokenizers.Llama3Added.Length));
        using var hf = new Tokenizers.DotNet.Tokenizer(Path.Combine(dir, "tokenizer.json"));
        string[] texts =
        [
            .. HfTokenizerFileTests.FixedTexts,
            "Danielle Darrieux's mother tongue is French. The Eiffel Tower is located in Paris, and it opened in 1889.",
            "def f(x):\n    return x ** 2  # squares\n\n\tprint(f(12345678))",
            "Ünïcödé: naïve café, Straße, Ελληνικά, русский, 中文字符, 한국어, العربية, emoji 🙂👍🏽🇫🇷",
            "  multiple   spaces\r\n\r\nand\ttabs  \n",
            .. HfTokenizerFileTests.RandomTexts(TinyHfTokenizers.Llama3Added, 300, seed: 7),
        ];
        int multiTokenWords = 0;
        foreach (var text in texts)
        {
            var theirs = hf.Encode(text).Select(x => (int)x).ToArray();
            var mine = ours.EncodePrompt(text);
            AssertSameIds("cl100k in Llama 3's layout", text, theirs, mine);
            if (mine.Any(id => id > 1000 && id < ranks.Count)) multiTokenWords++;
        }
        Assert.True(multiTokenWords > texts.Length / 2, $"only {multiTokenWords} of {texts.Length} texts used a merged token above id 1000");
    }

    /// <summary>cl100k_base's token bytes and ranks, from the data package's embedded tiktoken file (deflated: a "Capacity: N" line, then the tokens in base64 in rank order).</summary>
    private static Dictionary<byte[], int> Cl100kRanks()
    {
        var asm = System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.Cl100kBase");
        using var raw = asm.GetManifestResourceStream("cl100k_base.tiktoken.deflate")
            ?? throw new InvalidOperationException("cl100k_base.tiktoken.deflate not in Microsoft.ML.Tokenizers.Data.Cl100kBase");
        using var reader = new StreamReader(new System.IO.Compression.DeflateStream(raw, System.IO.Compression.CompressionMode.Decompress));
        var ranks = new Dictionary<byte[], int>(ByteArrayComparer.Instance);
        string header = reader.ReadLine() ?? "";
        Assert.StartsWith("Capacity: ", header); // then one base64 token per line, its rank the line's index
        while (reader.ReadLine() is { Length: > 0 } line) ranks.Add(Convert.FromBase64String(line), ranks.Count);
        return ranks;
    }

    /// <summary>The two parts BPE over ranks below <paramref name="rank"/> leaves of a token's bytes (the converter's merge for it).</summary>
    private static (byte[] Left, byte[] Right) LastMerge(byte[] token, int rank, Dictionary<byte[], int> ranks)
    {
        var parts = token.Select(b => new[] { b }).ToList();
        while (parts.Count > 2)
        {
            int best = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < parts.Count; i++)
                if (ranks.TryGetValue([.. parts[i], .. parts[i + 1]], out int r) && r < rank && r < bestRank) { best = i; bestRank = r; }
            if (best < 0) break;
            parts[best] = [.. parts[best], .. parts[best + 1]];
            parts.RemoveAt(best + 1);
        }
        Assert.True(parts.Count == 2, $"token of rank {rank} does not reduce to two parts over the lower ranks");
        return (parts[0], parts[1]);
    }

    private sealed class ByteArrayComparer : IEqualityComparer<byte[]>
    {
        public static readonly ByteArrayComparer Instance = new();
        public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);
        public int GetHashCode(byte[] b)
        {
            var h = new HashCode();
            h.AddBytes(b);
            return h.ToHashCode();
        }
    }

    private static void SkipOffLinuxX64() =>
        Assert.SkipUnless(OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64,
            "the tests reference Hugging Face tokenizers' native library for linux-x64 only");

    private static void AssertSameIds(string what, string text, int[] theirs, int[] mine) =>
        Assert.True(theirs.SequenceEqual(mine), $"{what} \"{Escape(text)}\": Hugging Face [{string.Join(", ", theirs)}], ours [{string.Join(", ", mine)}]");

    private static string Escape(string s) => s.Replace("\r", "\\r").Replace("\n", "\\n").Replace("\t", "\\t");
}
