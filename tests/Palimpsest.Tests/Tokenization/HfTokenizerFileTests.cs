using System.Text;
using System.Text.Json.Nodes;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Tokenization;

/// <summary>
/// Llama 3, Qwen2 and Mistral v0.3 tokenizer files (built small by <see cref="TinyHfTokenizers"/>) read by
/// <see cref="TokenizerFactory"/>: ids equal to <see cref="NaiveTokenizers"/>' reading of the same files on
/// fixed and random texts, round trips, added tokens in text, BOS/EOS conventions, prompts and subject
/// positions with the BOS, and one-line refusals.
/// </summary>
public sealed class HfTokenizerFileTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("palimpsest-hftok-").FullName;

    private int _folders;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    /// <summary>The llama fixture's config with room for the tiny tokenizers' ids and no EOS of its own.</summary>
    internal static ModelConfig Config(int? eos = null, int vocab = 512) =>
        ModelConfig.Load(Path.Combine(AppContext.BaseDirectory, "fixtures", "llama", "config.json")) with { Vocab = vocab, EosTokenId = eos };

    private string Folder(JsonObject tokenizerJson, string? tokenizerConfig = null, bool sentencePiece = false)
    {
        string dir = Directory.CreateDirectory(Path.Combine(_tmp, "m" + _folders++)).FullName;
        TinyHfTokenizers.Write(dir, tokenizerJson);
        if (tokenizerConfig is not null) File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), tokenizerConfig);
        if (sentencePiece) TinySentencePiece.Write(dir);
        return dir;
    }

    internal static readonly string[] FixedTexts =
    [
        "The mother tongue of Danielle Darrieux is",
        "the and in on 'll's",
        "I'M here, YOU'LL see; it's they'RE we've",
        "12345 and 4567.1234567890",
        "a\r\n\r\nb  \n\n  c\t\td \n",
        "$the teé Téé é",
        "te\u0301 e\u0301",                      // "é" decomposed: NFC (Qwen2) composes it, Llama 3 keeps the bytes
        " xyz xyz",
        "   leading and trailing   ",
        "emoji 🙂👍🏽 and 日本語",
    ];

    /// <summary>Random texts from fragments that hit each regex branch, merge and added token.</summary>
    internal static IEnumerable<string> RandomTexts(IReadOnlyList<string> added, int count, int seed)
    {
        string[] parts = ["the", " the", "The", "he", " and", "an", "in", " in", "'s", "'LL", "'m", " ", "  ", "\n", "\r\n", "\n\n", "\t",
            "123", "4567", "9", "é", "te\u0301", " teé", "$", "$the", "!?", ".", " xyz", "xyz", "🙂", "日本", "Ünï", " on", "ll", ..added];
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var sb = new StringBuilder();
            int n = rng.Next(1, 12);
            for (int j = 0; j < n; j++) sb.Append(parts[rng.Next(parts.Length)]);
            yield return sb.ToString();
        }
    }

    public static readonly TheoryData<string> ByteLevelFamilies = new("llama3", "qwen2");

    [Theory]
    [MemberData(nameof(ByteLevelFamilies))]
    public void ByteLevel_IdsAreTheFilesRules_OnFixedAndRandomTexts(string family)
    {
        bool llama = family == "llama3";
        var json = llama ? TinyHfTokenizers.Llama3() : TinyHfTokenizers.Qwen2();
        var tok = TokenizerFactory.ForModel(Folder(json), Config());
        Assert.Contains("tokenizer.json", tok.Source);
        string[] addedNames = llama ? TinyHfTokenizers.Llama3Added : TinyHfTokenizers.Qwen2Added;
        var added = addedNames.Select((a, i) => (a, TinyHfTokenizers.FirstAdded + i)).ToDictionary(x => x.a, x => x.Item2);
        bool nfc = !llama;
        int checkedTexts = 0;
        foreach (var text in FixedTexts.Concat(RandomTexts(addedNames, 400, seed: llama ? 1 : 2)))
        {
            var expected = NaiveTokenizers.ByteLevel(text, added, TinyHfTokenizers.ByteLevelVocab(), TinyHfTokenizers.Merges,
                llama ? TinyHfTokenizers.Llama3Regex : TinyHfTokenizers.Qwen2Regex, ignoreMerges: llama, nfc);
            var ids = tok.Encode(text);
            Assert.True(expected.SequenceEqual(ids), $"\"{text}\": expected [{string.Join(", ", expected)}], got [{string.Join(", ", ids)}]");
            Assert.Equal(nfc ? text.Replace("e\u0301", "\u00e9") : text, tok.Decode(ids));
            checkedTexts++;
        }
        Assert.Equal(FixedTexts.Length + 400, checkedTexts);
    }

    [Fact]
    public void Llama3_DigitsInThrees_IgnoreMerges_AndMergesUsed()
    {
        var tok = TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Llama3()), Config());
        var v = TinyHfTokenizers.ByteLevelVocab();
        // \p{N}{1,3}: "12345" is the words "123" and "45", each one merged token.
        Assert.Equal([v["123"], v["45"]], tok.Encode("12345"));
        // ignore_merges: " xyz" is in the vocabulary though no merge builds it.
        Assert.Equal([v[TinyHfTokenizers.Unreachable]], tok.Encode(" xyz"));
        // merges: "Ġt he" after "Ġ t" and "h e"; [^\r\n\p{L}\p{N}]?\p{L}+ keeps "$" with the letters, and "$t he" merges them.
        Assert.Equal([v["Ġthe"], v["Ġand"], v["$the"]], tok.Encode(" the and$the"));
    }

    [Fact]
    public void Qwen2_OneDigitPerWord_Nfc_NoIgnoreMerges()
    {
        var tok = TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Qwen2()), Config());
        var v = TinyHfTokenizers.ByteLevelVocab();
        Assert.Equal("12345".Select(c => v[c.ToString()]), tok.Encode("12345"));
        Assert.Equal(4, tok.Encode(" xyz").Length);                       // bytes: no merge builds "Ġxyz"
        Assert.Equal(tok.Encode("t\u00e9"), tok.Encode("te\u0301"));     // NFC composes e + U+0301 into é
        Assert.Equal([v["t"], v["Ã©"]], tok.Encode("te\u0301"));
        // merge order: "Ġ t" (rank 0) takes the "t" before "t e" (16) could, so "Ġte" and "Ġteé" are never built
        Assert.Equal([v["Ġt"], v["e"], v["Ã©"]], tok.Encode(" teé"));
    }

    [Fact]
    public void Llama3_BosEosAndAddedTokensInText()
    {
        var tok = TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Llama3()), Config(eos: TinyHfTokenizers.Llama3Eos));
        var v = TinyHfTokenizers.ByteLevelVocab();
        Assert.True(tok.AddsBos);
        Assert.Equal(TinyHfTokenizers.Llama3Bos, tok.BosId);
        Assert.Equal(TinyHfTokenizers.Llama3Eos, tok.EosId);
        Assert.Equal([v["he"]], tok.Encode("he"));
        Assert.Equal([TinyHfTokenizers.Llama3Bos, v["he"]], tok.EncodePrompt("he"));
        // Added tokens written in the text are their ids, as Hugging Face encodes them by default (so a BOS
        // written at the start of a prompt gives two, as it does there).
        Assert.Equal([TinyHfTokenizers.Llama3Bos, v["he"], TinyHfTokenizers.Llama3Eot], tok.Encode("<|begin_of_text|>he<|eot_id|>"));
        Assert.Equal([TinyHfTokenizers.Llama3Bos, TinyHfTokenizers.Llama3Bos, v["Ġthe"]], tok.EncodePrompt("<|begin_of_text|> the"));
        Assert.Equal("<|begin_of_text|>he<|eot_id|>", tok.Decode([TinyHfTokenizers.Llama3Bos, v["he"], TinyHfTokenizers.Llama3Eot]));
    }

    [Fact]
    public void Qwen2_NoBos_EosFromItsEndOfText()
    {
        var tok = TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Qwen2()), Config());
        Assert.False(tok.AddsBos);
        Assert.Null(tok.BosId);
        Assert.Equal(tok.Encode("the"), tok.EncodePrompt("the"));
        Assert.Equal(TinyHfTokenizers.Qwen2EndOfText, tok.EosId);
        Assert.Equal([TinyHfTokenizers.FirstAdded + 1, TinyHfTokenizers.FirstAdded + 2], tok.Encode("<|im_start|><|im_end|>"));
    }

    [Fact]
    public void TokenizerConfig_AddBosToken_WinsOverThePostProcessor()
    {
        var off = TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Llama3(), """{"add_bos_token": false, "bos_token": "<|begin_of_text|>"}"""), Config());
        Assert.False(off.AddsBos);
        Assert.Equal(off.Encode("the"), off.EncodePrompt("the"));
        var on = TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Qwen2(), """{"add_bos_token": true, "bos_token": {"content": "<|im_start|>"}}"""), Config());
        Assert.True(on.AddsBos);
        Assert.Equal(TinyHfTokenizers.FirstAdded + 1, on.BosId);
        Assert.Equal([TinyHfTokenizers.FirstAdded + 1, .. on.Encode("the")], on.EncodePrompt("the"));
    }

    public static readonly TheoryData<string> PrependSchemes = new("first", "always", "llama2");

    /// <summary>
    /// tokenizer.json is read (as Hugging Face's fast tokenizer does) though tokenizer.model is beside it; the expected
    /// ids are SentencePiece's, from the model's scores, so the file's merges are checked against them too. The
    /// texts include "▁▁▁is", where equal scores make the leftmost pair win.
    /// </summary>
    [Theory]
    [MemberData(nameof(PrependSchemes))]
    public void Mistral_SentencePieceStyleTokenizerJson_IdsAreTheFilesRules(string scheme)
    {
        var tok = TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Mistral(scheme), sentencePiece: true), Config(eos: TinySentencePiece.Eos));
        Assert.Equal("SentencePiece-style BPE from tokenizer.json", tok.Source);
        var added = new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2, ["[INST]"] = TinySentencePiece.Inst, ["[/INST]"] = TinySentencePiece.EndInst };
        string[] texts = ["the and", " the and", "[INST] the and [/INST]", "<s>the</s>", "x é 🙂 is", "the  and   is", "[INST]is[/INST] and", ..RandomTexts([.. added.Keys], 300, seed: 3)];
        foreach (var text in texts)
        {
            var expected = NaiveTokenizers.SentencePiece(text, added, TinySentencePiece.Pieces, scheme);
            var ids = tok.Encode(text);
            Assert.True(expected.SequenceEqual(ids), $"\"{text}\": expected [{string.Join(", ", expected)}], got [{string.Join(", ", ids)}]");
        }
        Assert.Equal([TinySentencePiece.The, TinySentencePiece.And], tok.Encode("the and"));
        Assert.True(tok.AddsBos);
        Assert.Equal(TinySentencePiece.Bos, tok.BosId);
        Assert.Equal(TinySentencePiece.Eos, tok.EosId);
        Assert.Equal([TinySentencePiece.Bos, TinySentencePiece.The, TinySentencePiece.And], tok.EncodePrompt("the and"));
        foreach (var text in new[] { "the and", "x é 🙂 is", "the  and" })
            Assert.Equal(text, tok.Decode(tok.Encode(text)));
        // After an added token only "first" adds no "▁", so only there does such text come back unchanged.
        if (scheme == "first") Assert.Equal("[INST] the [/INST]x", tok.Decode(tok.Encode("[INST] the [/INST]x")));
        Assert.Equal("<s> the", tok.Decode(tok.EncodePrompt("the")));   // as Hugging Face decodes it, specials kept
    }

    [Fact]
    public void TokenizerModelAlone_AddsBosAsLlamaTokenizerDoes_UnlessTokenizerConfigSaysNo()
    {
        string dir = Directory.CreateDirectory(Path.Combine(_tmp, "spm")).FullName;
        TinySentencePiece.Write(dir);
        var tok = TokenizerFactory.ForModel(dir, Config());
        Assert.Equal("SentencePiece from tokenizer.model", tok.Source);
        Assert.True(tok.AddsBos);
        Assert.Equal(TinySentencePiece.Bos, tok.BosId);
        Assert.Equal([TinySentencePiece.The, TinySentencePiece.And], tok.Encode("the and"));
        Assert.Equal([TinySentencePiece.Bos, TinySentencePiece.The, TinySentencePiece.And], tok.EncodePrompt("the and"));
        File.WriteAllText(Path.Combine(dir, "tokenizer_config.json"), """{"add_bos_token": false}""");
        Assert.False(TokenizerFactory.ForModel(dir, Config()).AddsBos);
    }

    [Fact]
    public void Gpt2_HasNoBos_PromptIdsUnchanged()
    {
        var config = ModelConfig.Load(Path.Combine(AppContext.BaseDirectory, "fixtures", "gpt2", "config.json")) with { Vocab = TokenizerFactory.Gpt2VocabSize };
        var tok = TokenizerFactory.Gpt2(config);
        Assert.False(tok.AddsBos);
        Assert.Null(tok.BosId);
        Assert.Equal([464, 2802, 11880, 286, 39808, 7491, 5034, 2821, 318], tok.EncodePrompt("The mother tongue of Danielle Darrieux is"));
    }

    /// <summary>Each setting the reader does not implement, changed in a file that otherwise loads: the refusal is one line naming the file, field and value.</summary>
    [Theory]
    [InlineData("model.type WordPiece", "model.type", "WordPiece")]
    [InlineData("model.type Unigram", "model.type", "Unigram")]
    [InlineData("model.continuing_subword_prefix", "model.continuing_subword_prefix", "##")]
    [InlineData("pre_tokenizer Whitespace", "pre_tokenizer.type", "Whitespace")]
    [InlineData("pre_tokenizer [Digits, ByteLevel]", "pre_tokenizer.pretokenizers", "Digits")]
    [InlineData("split behavior", "pre_tokenizer.pretokenizers[0].behavior", "Removed")]
    [InlineData("split bad regex", "pre_tokenizer.pretokenizers[0].pattern.Regex", "regular expression")]
    [InlineData("byte-level use_regex", "pre_tokenizer.pretokenizers[1].use_regex", "true")]
    [InlineData("normalizer Lowercase", "normalizer", "Lowercase")]
    [InlineData("post_processor Roberta", "post_processor", "RobertaProcessing")]
    [InlineData("template appends eos", "post_processor.single", "</s>")]
    [InlineData("added lstrip", "added_tokens[1].lstrip", "<|end_of_text|>")]
    [InlineData("metaspace prepend_scheme", "pre_tokenizer.prepend_scheme", "sometimes")]
    [InlineData("metaspace split", "pre_tokenizer.split", "true")]
    [InlineData("add_eos_token", "add_eos_token", "true")]
    public void UnsupportedSetting_IsOneLineNamingFileFieldAndValue(string change, string field, string value)
    {
        var json = change.StartsWith("metaspace", StringComparison.Ordinal) ? TinyHfTokenizers.Mistral() : TinyHfTokenizers.Llama3();
        string? config = null;
        var model = json["model"]!.AsObject();
        var pre = json["pre_tokenizer"]!.AsObject();
        string file = "tokenizer.json";
        switch (change)
        {
            case "model.type WordPiece": model["type"] = "WordPiece"; break;
            case "model.type Unigram": model["type"] = "Unigram"; break;
            case "model.continuing_subword_prefix": model["continuing_subword_prefix"] = "##"; break;
            case "pre_tokenizer Whitespace": json["pre_tokenizer"] = new JsonObject { ["type"] = "Whitespace" }; break;
            case "pre_tokenizer [Digits, ByteLevel]": pre["pretokenizers"]![0] = new JsonObject { ["type"] = "Digits", ["individual_digits"] = true }; break;
            case "split behavior": pre["pretokenizers"]![0]!["behavior"] = "Removed"; break;
            case "split bad regex": pre["pretokenizers"]![0]!["pattern"] = new JsonObject { ["Regex"] = "(?<x" }; break;
            case "byte-level use_regex": pre["pretokenizers"]![1]!["use_regex"] = true; break;
            case "normalizer Lowercase": json["normalizer"] = new JsonObject { ["type"] = "Lowercase" }; break;
            case "post_processor Roberta": json["post_processor"] = new JsonObject { ["type"] = "RobertaProcessing" }; break;
            case "template appends eos":
                var t = TinyHfTokenizers.Template("<|begin_of_text|>", TinyHfTokenizers.Llama3Bos);
                t["single"]!.AsArray().Add(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = "</s>", ["type_id"] = 0 } });
                json["post_processor"] = t;
                break;
            case "added lstrip": json["added_tokens"]![1]!["lstrip"] = true; break;
            case "metaspace prepend_scheme": pre["prepend_scheme"] = "sometimes"; break;
            case "metaspace split": pre["split"] = true; break;
            case "add_eos_token": config = """{"add_eos_token": true}"""; file = "tokenizer_config.json"; break;
            default: throw new ArgumentException(change);
        }
        var e = Assert.Throws<ModelFormatException>(() => TokenizerFactory.ForModel(Folder(json, config), Config()));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains(file, e.Message);
        Assert.Contains($"'{field}'", e.Message);
        Assert.Contains(value, e.Message);
    }

    [Fact]
    public void TheUnchangedFilesLoad_SoEachRefusalAboveIsCausedByItsChange()
    {
        Assert.NotNull(TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Llama3()), Config()));
        Assert.NotNull(TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Mistral()), Config()));
    }

    // A prompt that starts a sequence goes through EncodePrompt: with Llama 3's files the model reads
    // <|begin_of_text|> first, as under Hugging Face, and the subject positions an edit reads move with it;
    // with GPT-2's nothing changes.

    [Fact]
    public void GreedyText_ReadsTheBosFirst()
    {
        using var backend = new ReferenceBackend();
        using var model = Model.Load(Path.Combine(AppContext.BaseDirectory, "fixtures", "llama"), backend);
        using var tf = new Transformer(model);
        var tok = TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Llama3()), model.Config);
        var gen = new Generator(tf);
        int[] withBos = [TinyHfTokenizers.Llama3Bos, .. tok.Encode("he in the")];
        var expected = gen.Generate(withBos, 4, null, tok.EosId).Where(i => i != tok.EosId).ToArray();
        Assert.Equal(tok.Decode(expected), gen.GreedyText(tok, "he in the", 4));
    }

    [Fact]
    public void SubjectPositions_CountTheBos()
    {
        var tok = TokenizerFactory.ForModel(Folder(TinyHfTokenizers.Llama3()), Config());
        var pos = SubjectTokens.Locate(tok, "he in {} and", "the");
        Assert.Equal(TinyHfTokenizers.Llama3Bos, pos.Ids[0]);
        // the tokens after the BOS up to the index spell the prompt up to the subject's end
        Assert.Equal("he in the", tok.Decode(pos.Ids.AsSpan(1, pos.Index)));
        var first = SubjectTokens.Locate(tok, "he in {} and", "the", SubjectToken.First);
        Assert.Equal("he in", tok.Decode(first.Ids.AsSpan(1, first.Index - 1)));
        var (ids, idx) = new FactProbes(tok).Encode("he in {} and", "the");
        Assert.Equal(pos.Ids, ids);
        Assert.Equal(pos.Index, idx);
    }

    [Fact]
    public void Gpt2_SubjectPositionsAndPromptIdsAreUnchanged()
    {
        var config = ModelConfig.Load(Path.Combine(AppContext.BaseDirectory, "fixtures", "gpt2", "config.json")) with { Vocab = TokenizerFactory.Gpt2VocabSize };
        var tok = TokenizerFactory.Gpt2(config);
        var pos = SubjectTokens.Locate(tok, "The mother tongue of {} is", "Danielle Darrieux");
        Assert.Equal(tok.Encode("The mother tongue of Danielle Darrieux is"), pos.Ids);
        Assert.Equal("The mother tongue of Danielle Darrieux", tok.Decode(pos.Ids.AsSpan(0, pos.Index + 1)));
    }

    [Fact]
    public void ConfigEosList_KeepsEveryId_AndGenerationStopsAtAny()
    {
        // Llama 3.1 Instruct: "eos_token_id": [128001, 128008, 128009].
        string src = File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "fixtures", "llama", "config.json"));
        var node = JsonNode.Parse(src)!.AsObject();
        node["eos_token_id"] = new JsonArray(7, 8, 9);
        string path = Path.Combine(_tmp, "config.json");
        File.WriteAllText(path, node.ToJsonString());
        var config = ModelConfig.Load(path);
        Assert.Equal(7, config.EosTokenId);
        Assert.Equal([7, 8, 9], config.EosTokenIds);

        // the generator stops at whichever of them comes first: the third token of a free run, made a stop id
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Palimpsest.Runtime.Model.Load(Path.Combine(AppContext.BaseDirectory, "fixtures", "llama"), b);
        var gen = new Palimpsest.Runtime.Generator(new Palimpsest.Runtime.Transformer(model));
        int[] prompt = [3, 1, 4, 1, 5];
        var free = gen.Generate(prompt, 8);
        int k = Array.FindIndex(free, t => Array.IndexOf(free, t) == Array.LastIndexOf(free, t) && Array.IndexOf(free, t) >= 2);
        Assert.True(k >= 2, $"no token of the free run {string.Join(",", free)} occurs once at index >= 2");
        var stopped = gen.Generate(prompt, 8, null, [free[k], 100_000]);
        Assert.Equal(free[..(k + 1)], stopped);

        node["eos_token_id"] = "seven";
        File.WriteAllText(path, node.ToJsonString());
        var e = Assert.Throws<ModelFormatException>(() => ModelConfig.Load(path));
        Assert.Contains("eos_token_id", e.Message);
        node["eos_token_id"] = 7;
        node["num_hidden_layers"] = new JsonArray(2); // a list is only for token ids
        File.WriteAllText(path, node.ToJsonString());
        e = Assert.Throws<ModelFormatException>(() => ModelConfig.Load(path));
        Assert.Contains("num_hidden_layers", e.Message);
    }
}
