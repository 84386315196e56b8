using System.Text.Json.Nodes;

namespace Palimpsest.Tests.Tokenization;

/// <summary>
/// Small tokenizer.json files shaped like the ones Llama 3, Qwen2 and Mistral v0.3 ship: the same
/// pre-tokenizer regexes, normaliser, added tokens and post-processor, with a vocabulary of the 256 byte
/// symbols and a few merges chosen to exercise them (merge order, digits, contractions, newlines, "é",
/// a token only ignore_merges reaches). Ids are small so a tiny model can read them.
/// </summary>
internal static class TinyHfTokenizers
{
    /// <summary>Llama 3's pre-tokenizer regex (tokenizer.json, Split pattern), copied as it ships.</summary>
    public const string Llama3Regex = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Qwen2's: the same but one digit per word.</summary>
    public const string Qwen2Regex = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>Merges in rank order, in GPT-2's byte alphabet (Ġ = space, Ċ = newline, Ã© = "é").</summary>
    public static readonly string[] Merges =
    [
        "Ġ t", "h e", "Ġt he", "i n", "Ġ in", "1 2", "12 3", "Ġ a", "Ġa n", "Ġan d", "' s", "Ċ Ċ", "Ġ Ġ",
        "e r", "Ã ©", "Ġ Ã©", "t e", "Ġ te", "Ġte Ã©", "' m", "l l", "' ll", "o n", "Ġ on", "$ t", "$t he", "4 5",
    ];

    /// <summary>A vocabulary token no merge sequence builds: only ignore_merges turns " xyz" into it.</summary>
    public const string Unreachable = "Ġxyz";

    /// <summary>
    /// The first added token's id: right after the vocabulary (256 bytes, 27 merges, <see cref="Unreachable"/>), as in
    /// the files models ship. Hugging Face numbers added tokens on from the vocabulary's size whatever ids the file
    /// gives them (and warns when they differ); we read the file's ids, so a gap would make the two disagree.
    /// </summary>
    public const int FirstAdded = 284;

    public static readonly string[] Llama3Added = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>"];
    public const int Llama3Bos = FirstAdded, Llama3Eos = FirstAdded + 1, Llama3Eot = FirstAdded + 2;

    public static readonly string[] Qwen2Added = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    public const int Qwen2EndOfText = FirstAdded;

    public static Dictionary<string, int> ByteLevelVocab()
    {
        var v = new Dictionary<string, int>();
        var map = TinyBpe.ByteToUnicode();
        for (int b = 0; b < 256; b++) v[map[b]] = b;
        foreach (var m in Merges) v.TryAdd(m.Replace(" ", ""), v.Count);
        v[Unreachable] = v.Count;
        return v;
    }

    /// <summary>Llama 3's layout: Split(regex) + ByteLevel, ignore_merges, post_processor adding &lt;|begin_of_text|&gt;.</summary>
    public static JsonObject Llama3() => ByteLevelJson(Llama3Regex, Llama3Added, normalizer: null, ignoreMerges: true, decoderFlags: true,
        postProcessor: new JsonObject
        {
            ["type"] = "Sequence",
            ["processors"] = new JsonArray(
                new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = false, ["use_regex"] = true },
                Template("<|begin_of_text|>", Llama3Bos)),
        });

    /// <summary>Qwen2's layout: NFC normaliser, Split(regex) + ByteLevel, no BOS (ByteLevel post-processor).</summary>
    public static JsonObject Qwen2() => ByteLevelJson(Qwen2Regex, Qwen2Added, normalizer: new JsonObject { ["type"] = "NFC" }, ignoreMerges: false, decoderFlags: false,
        postProcessor: new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = false, ["use_regex"] = false });

    public static JsonObject Template(string bos, int id) => new()
    {
        ["type"] = "TemplateProcessing",
        ["single"] = new JsonArray(new JsonObject { ["SpecialToken"] = new JsonObject { ["id"] = bos, ["type_id"] = 0 } },
                                   new JsonObject { ["Sequence"] = new JsonObject { ["id"] = "A", ["type_id"] = 0 } }),
        ["pair"] = new JsonArray(),
        ["special_tokens"] = new JsonObject { [bos] = new JsonObject { ["id"] = bos, ["ids"] = new JsonArray(id), ["tokens"] = new JsonArray(bos) } },
    };

    private static JsonObject ByteLevelJson(string regex, string[] added, JsonObject? normalizer, bool ignoreMerges, bool decoderFlags, JsonObject postProcessor)
    {
        // Llama 3's file writes null for the affixes, Qwen2's (and GPT-2's) "".
        JsonNode? affix = ignoreMerges ? null : "";
        var vocab = new JsonObject();
        foreach (var (k, v) in ByteLevelVocab()) vocab[k] = v;
        return new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = AddedTokens(added),
            ["normalizer"] = normalizer,
            ["pre_tokenizer"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["pretokenizers"] = new JsonArray(
                    new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = regex }, ["behavior"] = "Isolated", ["invert"] = false },
                    new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
            },
            ["post_processor"] = postProcessor,
            // Llama 3's file sets the three flags true, Qwen2's false (Hugging Face's reader requires them)
            ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = decoderFlags, ["trim_offsets"] = decoderFlags, ["use_regex"] = decoderFlags },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = affix, ["end_of_word_suffix"] = affix?.DeepClone(),
                ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = ignoreMerges,
                ["vocab"] = vocab,
                ["merges"] = new JsonArray(Merges.Select(m => (JsonNode)new JsonArray(m.Split(' ').Select(p => (JsonNode)p!).ToArray())).ToArray()),
            },
        };
    }

    public static JsonArray AddedTokens(IReadOnlyList<string> added, int first = FirstAdded) =>
        new(added.Select((a, i) => (JsonNode)new JsonObject
        {
            ["id"] = first + i, ["content"] = a, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
        }).ToArray());

    /// <summary>
    /// Mistral v0.3's tokenizer.json for <see cref="TinySentencePiece"/>'s pieces, as Hugging Face's converter writes
    /// it: Metaspace with prepend_scheme "first" (or Llama 2's normaliser Prepend("▁") + Replace(" ", "▁") and no
    /// pre-tokenizer, for "llama2"), BPE with byte fallback and the pieces' merges, added tokens &lt;unk&gt; &lt;s&gt; &lt;/s&gt;
    /// [INST] [/INST] (the model's control pieces), and a post-processor adding &lt;s&gt;.
    /// </summary>
    public static JsonObject Mistral(string prependScheme = "first")
    {
        var vocab = new JsonObject();
        for (int i = 0; i < TinySentencePiece.Pieces.Length; i++) vocab[TinySentencePiece.Pieces[i].Piece] = i;
        var added = new JsonArray();
        foreach (var (name, id) in new[] { ("<unk>", 0), ("<s>", 1), ("</s>", 2), ("[INST]", TinySentencePiece.Inst), ("[/INST]", TinySentencePiece.EndInst) })
            added.Add(new JsonObject { ["id"] = id, ["content"] = name, ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true });
        return new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = added,
            ["normalizer"] = prependScheme != "llama2" ? null : new JsonObject
            {
                ["type"] = "Sequence",
                ["normalizers"] = new JsonArray(new JsonObject { ["type"] = "Prepend", ["prepend"] = "\u2581" },
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = " " }, ["content"] = "\u2581" }),
            },
            ["pre_tokenizer"] = prependScheme == "llama2" ? null
                : new JsonObject { ["type"] = "Metaspace", ["replacement"] = "\u2581", ["prepend_scheme"] = prependScheme, ["split"] = false },
            ["post_processor"] = Template("<s>", TinySentencePiece.Bos),
            // as the converter writes it: "▁" back to spaces, byte pieces to bytes, and (with a prepended "▁") the first space dropped
            ["decoder"] = new JsonObject
            {
                ["type"] = "Sequence",
                ["decoders"] = new JsonArray(
                    new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["String"] = "\u2581" }, ["content"] = " " },
                    new JsonObject { ["type"] = "ByteFallback" },
                    new JsonObject { ["type"] = "Fuse" },
                    new JsonObject { ["type"] = "Strip", ["content"] = " ", ["start"] = 1, ["stop"] = 0 }),
            },
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = "<unk>", ["continuing_subword_prefix"] = null, ["end_of_word_suffix"] = null,
                ["fuse_unk"] = true, ["byte_fallback"] = true, ["ignore_merges"] = false, ["vocab"] = vocab,
                ["merges"] = new JsonArray(TinySentencePiece.Merges().Select(m => (JsonNode)m!).ToArray()),
            },
        };
    }

    public static void Write(string folder, JsonObject json) =>
        File.WriteAllText(Path.Combine(folder, "tokenizer.json"), json.ToJsonString());
}
