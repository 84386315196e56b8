using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Palimpsest.Models;
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
        Assert.SkipUnless(OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == System.Runtime.InteropServices.Architecture.X64,
            "the tests reference Hugging Face tokenizers' native library for linux-x64 only");
        JsonObject json = family switch
        {
            "llama3" => TinyHfTokenizers.Llama3(),
            "qwen2" => TinyHfTokenizers.Qwen2(),
            _ => TinyHfTokenizers.Mistral(family["mistral-".Length..]),
        };
        string dir = Directory.CreateDirectory(Path.Combine(_tmp, family)).FullName;
        TinyHfTokenizers.Write(dir, json);
        var config = ModelConfig.Load(Path.Combine(AppContext.BaseDirectory, "fixtures", "llama", "config.json")) with { Vocab = 512 };
        var ours = TokenizerFactory.ForModel(dir, config);
        using var hf = new Tokenizers.DotNet.Tokenizer(Path.Combine(dir, "tokenizer.json"));
        string[] added = family switch
        {
            "llama3" => TinyHfTokenizers.Llama3Added,
            "qwen2" => TinyHfTokenizers.Qwen2Added,
            _ => ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"],
        };
        Assert.Equal(TinyHfTokenizers.FirstAdded, TinyHfTokenizers.ByteLevelVocab().Count); // added ids follow the vocabulary, as shipped files have them
        var special = json["added_tokens"]!.AsArray().Select(t => (int)t!["id"]!).ToHashSet();
        int compared = 0;
        foreach (var text in HfTokenizerFileTests.FixedTexts.Concat(HfTokenizerFileTests.RandomTexts(added, 500, seed: family.Length)))
        {
            // Tokenizers.DotNet encodes with the file's post-processor (special tokens added): our prompt ids
            var raw = hf.Encode(text);
            var theirs = raw.Select(x => (int)x).ToArray();
            var mine = ours.EncodePrompt(text);
            Assert.True(theirs.SequenceEqual(mine), $"{family} \"{Escape(text)}\": Hugging Face [{string.Join(", ", theirs)}], ours [{string.Join(", ", mine)}]");
            // Tokenizers.DotNet decodes with skip_special_tokens; ours keeps them (transformers' default), so compare without
            var plain = mine.Where(id => !special.Contains(id)).ToArray();
            Assert.True(hf.Decode(raw) == ours.Decode(plain), $"{family} \"{Escape(text)}\": Hugging Face decodes \"{Escape(hf.Decode(raw))}\", ours \"{Escape(ours.Decode(plain))}\"");
            compared++;
        }
        Assert.Equal(HfTokenizerFileTests.FixedTexts.Length + 500, compared);
    }

    private static string Escape(string s) => s.Replace("\r", "\\r").Replace("\n", "\\n").Replace("\t", "\\t");
}
