using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using Palimpsest.Models;

namespace Palimpsest.Tokenization;

/// <summary>What a tokenizer.json's pre-tokenizer makes it: byte-level BPE, or SentencePiece-style BPE over "▁".</summary>
internal enum TokenizerJsonKind { ByteLevel, SentencePiece }

/// <summary>
/// The parts of a Hugging Face byte-level BPE tokenizer that encoding needs: vocabulary (keys in
/// GPT-2's byte-to-unicode alphabet), merges in priority order, added tokens, the pre-tokenizer
/// regex, the normaliser and the post-processor's BOS. Read from tokenizer.json or from the older
/// vocab.json + merges.txt pair; or a SentencePiece-style tokenizer.json (Mistral, Llama 2: "▁" for
/// spaces, byte fallback). Every setting that would change the ids and is not implemented is refused
/// with one line naming the field.
/// </summary>
internal sealed class HfBpeFiles
{
    /// <summary>GPT-2's pre-tokenizer (ByteLevel with use_regex=true in tokenizers).</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    public required string Origin { get; init; }
    public required Dictionary<string, int> Vocab { get; init; }
    public required List<string> Merges { get; init; }
    public required Dictionary<string, int> Special { get; init; }
    public string Pattern { get; init; } = Gpt2Pattern;
    /// <summary>Byte-level (GPT-2, Llama 3, Qwen2) or SentencePiece-style (Mistral, Llama 2: tokens over "▁", byte fallback).</summary>
    public TokenizerJsonKind Kind { get; init; } = TokenizerJsonKind.ByteLevel;
    /// <summary>Where a SentencePiece-style file puts "▁" before a piece of text.</summary>
    public SpacePrefix Prefix { get; init; } = SpacePrefix.Never;
    /// <summary>The normaliser is NFC (Qwen2), applied to the text between added tokens.</summary>
    public bool Nfc { get; init; }
    /// <summary>model.ignore_merges (Llama 3): a word that is in the vocabulary is that one token.</summary>
    public bool IgnoreMerges { get; init; }
    /// <summary>model.byte_fallback, model.unk_token and model.fuse_unk: what a SentencePiece-style file does with a character outside its vocabulary.</summary>
    public bool ByteFallback { get; init; }
    public string? UnknownToken { get; init; }
    public bool FuseUnknown { get; init; }
    /// <summary>The token the post_processor puts before every sequence, or null.</summary>
    public (string Token, int Id)? Bos { get; init; }

    /// <summary>The BPE merges of one word (pre-tokenisation and added tokens are done by <see cref="ByteLevelSegments"/>
    /// or <see cref="MetaspaceSegments"/>).</summary>
    public BpeOptions ToOptions()
    {
        var vocab = new Dictionary<string, int>(Vocab);
        // Added tokens must also be in the vocabulary, or the library cannot decode their ids.
        foreach (var (k, v) in Special) vocab[k] = v;
        return new BpeOptions(vocab)
        {
            Merges = Merges,
            ByteLevel = Kind == TokenizerJsonKind.ByteLevel,
            SpecialTokens = Special.Count > 0 ? Special : null,
        };
    }

    /// <summary>The conventional end-of-text token if the vocabulary has one.</summary>
    public int? GuessEos()
    {
        foreach (var name in new[] { "<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>" })
            if (Special.TryGetValue(name, out int id) || Vocab.TryGetValue(name, out id)) return id;
        return null;
    }

    public static HfBpeFiles FromVocabAndMerges(string vocabPath, string mergesPath)
    {
        var vocab = ReadVocab(vocabPath, ParseFile(vocabPath).RootElement, "top level");
        var merges = new List<string>();
        int lineNo = 0;
        foreach (var raw in File.ReadLines(mergesPath))
        {
            lineNo++;
            string line = raw.TrimEnd('\r');
            if (line.Length == 0 || (lineNo == 1 && line.StartsWith("#version"))) continue;
            if (line.Split(' ').Length != 2)
                throw new ModelFormatException($"{mergesPath}: line {lineNo} is not two space-separated tokens: \"{line}\"");
            merges.Add(line);
        }
        // vocab.json has no special-token marking; GPT-2-style <|...|> entries are special by convention.
        var special = vocab.Where(kv => kv.Key.StartsWith("<|") && kv.Key.EndsWith("|>")).ToDictionary(kv => kv.Key, kv => kv.Value);
        return new HfBpeFiles { Origin = vocabPath, Vocab = vocab, Merges = merges, Special = special };
    }

    public static HfBpeFiles FromTokenizerJson(string path)
    {
        using var doc = ParseFile(path);
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{path}: field 'model' is missing");
        string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "BPE";
        if (type != "BPE")
            throw new ModelFormatException($"{path}: field 'model.type' is '{type}'; only BPE tokenizer.json files (byte-level, or SentencePiece-style beside a tokenizer.model) are supported");
        // GPT-2's and Qwen2's files write "" for the affixes, Llama 3's null: both mean none.
        foreach (var f in new[] { "continuing_subword_prefix", "end_of_word_suffix", "dropout" })
            if (model.TryGetProperty(f, out var x) && x.ValueKind != JsonValueKind.Null && !(x.ValueKind == JsonValueKind.String && x.GetString() == ""))
                throw new ModelFormatException($"{path}: field 'model.{f}' is {OneLineJson(x)}; only null or \"\" is supported");

        var (kind, pattern, prefix) = PreTokenizer(path, root);
        bool nfc = Normalizer(path, root, ref prefix, kind);
        if (!model.TryGetProperty("vocab", out var v)) throw new ModelFormatException($"{path}: field 'model.vocab' is missing");
        var vocab = ReadVocab(path, v, "model.vocab");

        var merges = new List<string>();
        if (model.TryGetProperty("merges", out var m) && m.ValueKind == JsonValueKind.Array)
        {
            int i = 0;
            foreach (var e in m.EnumerateArray())
            {
                // Older files store "a b"; tokenizers >= 0.20 stores ["a", "b"] (tokens may then contain spaces).
                string? merge = e.ValueKind switch
                {
                    JsonValueKind.String => e.GetString(),
                    JsonValueKind.Array when e.GetArrayLength() == 2 && e[0].ValueKind == JsonValueKind.String && e[1].ValueKind == JsonValueKind.String
                        => e[0].GetString() + " " + e[1].GetString(),
                    _ => null,
                };
                if (merge is null || merge.Split(' ').Length != 2)
                    throw new ModelFormatException($"{path}: field 'model.merges[{i}]' is not a pair of tokens");
                merges.Add(merge);
                i++;
            }
        }

        var special = AddedTokens(path, root);
        return new HfBpeFiles
        {
            Origin = path, Vocab = vocab, Merges = merges, Special = special, Pattern = pattern, Kind = kind, Prefix = prefix,
            Nfc = nfc, IgnoreMerges = model.TryGetProperty("ignore_merges", out var im) && im.ValueKind == JsonValueKind.True,
            Bos = PostProcessorBos(path, root, special, vocab),
            ByteFallback = model.TryGetProperty("byte_fallback", out var bf) && bf.ValueKind == JsonValueKind.True,
            FuseUnknown = model.TryGetProperty("fuse_unk", out var fu) && fu.ValueKind == JsonValueKind.True,
            UnknownToken = StringField(model, "unk_token"),
        };
    }

    /// <summary>
    /// added_tokens: every entry is matched in raw text (special or not, as Hugging Face does by default). Tokens that
    /// strip neighbouring spaces or match only whole words would change the text around them, and are refused.
    /// </summary>
    private static Dictionary<string, int> AddedTokens(string path, JsonElement root)
    {
        var added = new Dictionary<string, int>();
        if (!root.TryGetProperty("added_tokens", out var list) || list.ValueKind != JsonValueKind.Array) return added;
        int i = 0;
        foreach (var a in list.EnumerateArray())
        {
            if (!a.TryGetProperty("content", out var c) || c.ValueKind != JsonValueKind.String || c.GetString()!.Length == 0
                || !a.TryGetProperty("id", out var id) || !id.TryGetInt32(out int idv) || idv < 0)
                throw new ModelFormatException($"{path}: field 'added_tokens[{i}]' needs a non-empty 'content' and a non-negative integer 'id'");
            foreach (var f in new[] { "lstrip", "rstrip", "single_word" })
                if (a.TryGetProperty(f, out var x) && x.ValueKind == JsonValueKind.True)
                    throw new ModelFormatException($"{path}: field 'added_tokens[{i}].{f}' is true (token \"{c.GetString()}\"); only false is supported");
            added[c.GetString()!] = idv;
            i++;
        }
        return added;
    }

    /// <summary>
    /// The pre-tokenizer, which says what kind of BPE this is. Byte-level: plain ByteLevel (use_regex) means GPT-2's
    /// regex; Sequence[Split(regex, Isolated), ByteLevel(use_regex false)] (Llama 3, Qwen2) carries its own.
    /// SentencePiece-style (Mistral, Llama 2): Metaspace, or none with the "▁" rules in the normaliser. Anything else
    /// is refused.
    /// </summary>
    private static (TokenizerJsonKind Kind, string Pattern, SpacePrefix Prefix) PreTokenizer(string path, JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pt) || pt.ValueKind == JsonValueKind.Null)
            return (TokenizerJsonKind.SentencePiece, "", SpacePrefix.Never);
        string ptType = TypeOf(pt);
        switch (ptType)
        {
            case "ByteLevel":
                CheckByteLevel(path, pt, "pre_tokenizer", wantRegex: true);
                return (TokenizerJsonKind.ByteLevel, Gpt2Pattern, SpacePrefix.Never);
            case "Metaspace":
                return (TokenizerJsonKind.SentencePiece, "", Metaspace(path, pt));
            case "Sequence" when pt.TryGetProperty("pretokenizers", out var seq) && seq.ValueKind == JsonValueKind.Array:
            {
                var items = seq.EnumerateArray().ToList();
                string field = "pre_tokenizer.pretokenizers";
                if (items.Count == 2 && TypeOf(items[0]) == "Split" && TypeOf(items[1]) == "ByteLevel")
                {
                    CheckByteLevel(path, items[1], field + "[1]", wantRegex: false);
                    return (TokenizerJsonKind.ByteLevel, SplitPattern(path, items[0], field + "[0]"), SpacePrefix.Never);
                }
                if (items.Count == 1 && TypeOf(items[0]) == "ByteLevel")
                {
                    CheckByteLevel(path, items[0], field + "[0]", wantRegex: true);
                    return (TokenizerJsonKind.ByteLevel, Gpt2Pattern, SpacePrefix.Never);
                }
                if (items.Count == 1 && TypeOf(items[0]) == "Metaspace")
                    return (TokenizerJsonKind.SentencePiece, "", Metaspace(path, items[0]));
                throw new ModelFormatException($"{path}: field '{field}' is [{string.Join(", ", items.Select(TypeOf))}]; " +
                                               "supported: [Split, ByteLevel], [ByteLevel], [Metaspace]");
            }
            default:
                throw new ModelFormatException($"{path}: field 'pre_tokenizer.type' is '{ptType}'; supported: ByteLevel, Sequence[Split, ByteLevel], Metaspace");
        }
    }

    private static void CheckByteLevel(string path, JsonElement bl, string field, bool wantRegex)
    {
        if (bl.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True)
            throw new ModelFormatException($"{path}: field '{field}.add_prefix_space' is true, which is not supported");
        // use_regex defaults to true. Alone, ByteLevel splits by GPT-2's regex; after a Split it must not split again.
        bool useRegex = !bl.TryGetProperty("use_regex", out var ur) || ur.ValueKind != JsonValueKind.False;
        if (useRegex != wantRegex)
            throw new ModelFormatException($"{path}: field '{field}.use_regex' is {(useRegex ? "true" : "false")}; " +
                                           (wantRegex ? "a ByteLevel pre-tokenizer alone must split by its regex" : "after a Split it must be false"));
    }

    private static string SplitPattern(string path, JsonElement split, string field)
    {
        string behavior = split.TryGetProperty("behavior", out var b) && b.ValueKind == JsonValueKind.String ? b.GetString()! : "?";
        if (behavior != "Isolated")
            throw new ModelFormatException($"{path}: field '{field}.behavior' is '{behavior}'; only 'Isolated' is supported");
        if (split.TryGetProperty("invert", out var inv) && inv.ValueKind == JsonValueKind.True)
            throw new ModelFormatException($"{path}: field '{field}.invert' is true; only false is supported");
        string pattern;
        if (split.TryGetProperty("pattern", out var p) && p.TryGetProperty("Regex", out var rx) && rx.ValueKind == JsonValueKind.String)
            pattern = rx.GetString()!;
        else if (p.ValueKind == JsonValueKind.Object && p.TryGetProperty("String", out var str) && str.ValueKind == JsonValueKind.String)
            pattern = Regex.Escape(str.GetString()!);
        else
            throw new ModelFormatException($"{path}: field '{field}.pattern' needs a 'Regex' or 'String'");
        try { _ = new Regex(pattern); }
        catch (ArgumentException e) { throw new ModelFormatException($"{path}: field '{field}.pattern.Regex' is not a regular expression .NET reads ({TokenizerFactory.OneLine(e.Message)})"); }
        if (pattern.Length == 0 || Regex.IsMatch("", pattern))
            throw new ModelFormatException($"{path}: field '{field}.pattern' matches the empty string");
        return pattern;
    }

    private static SpacePrefix Metaspace(string path, JsonElement ms)
    {
        string replacement = ms.TryGetProperty("replacement", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : "?";
        if (replacement != "\u2581")
            throw new ModelFormatException($"{path}: field 'pre_tokenizer.replacement' is '{replacement}'; only '\u2581' is supported");
        if (ms.TryGetProperty("split", out var sp) && sp.ValueKind == JsonValueKind.True)
            throw new ModelFormatException($"{path}: field 'pre_tokenizer.split' is true; only false is supported (SentencePiece pieces may hold several '\u2581')");
        if (ms.TryGetProperty("prepend_scheme", out var ps) && ps.ValueKind == JsonValueKind.String)
            return ps.GetString() switch
            {
                "first" => SpacePrefix.First,
                "always" => SpacePrefix.Always,
                "never" => SpacePrefix.Never,
                var other => throw new ModelFormatException($"{path}: field 'pre_tokenizer.prepend_scheme' is '{other}'; supported: first, always, never"),
            };
        // tokenizers before 0.19 wrote add_prefix_space instead, which prepended to every piece.
        return ms.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.False ? SpacePrefix.Never : SpacePrefix.Always;
    }

    /// <summary>
    /// The normaliser: none, or NFC (Qwen2; <see cref="Palimpsest.Tokenization.Nfc"/>) for byte-level files; for
    /// SentencePiece-style files, Llama 2's Sequence[Prepend("▁"), Replace(" ", "▁")], which <see cref="MetaspaceSegments"/>
    /// applies. Returns whether it is NFC.
    /// </summary>
    private static bool Normalizer(string path, JsonElement root, ref SpacePrefix prefix, TokenizerJsonKind kind)
    {
        if (!root.TryGetProperty("normalizer", out var n) || n.ValueKind == JsonValueKind.Null) return false;
        var items = TypeOf(n) == "Sequence" && n.TryGetProperty("normalizers", out var seq) && seq.ValueKind == JsonValueKind.Array
            ? seq.EnumerateArray().ToList() : [n];
        bool nfc = false;
        foreach (var item in items)
        {
            string type = TypeOf(item);
            if (kind == TokenizerJsonKind.ByteLevel && type == "NFC")
                nfc = true;
            else if (kind == TokenizerJsonKind.SentencePiece && type == "Prepend" && StringField(item, "prepend") == "\u2581")
                prefix = SpacePrefix.Prepend;
            else if (kind == TokenizerJsonKind.SentencePiece && type == "Replace" && StringField(item, "content") == "\u2581"
                     && item.TryGetProperty("pattern", out var p) && p.ValueKind == JsonValueKind.Object && StringField(p, "String") == " ")
                continue; // spaces become "▁" in MetaspaceSegments
            else
                throw new ModelFormatException($"{path}: field 'normalizer' has '{type}', which is not supported for a " +
                                               (kind == TokenizerJsonKind.ByteLevel ? "byte-level BPE (supported: NFC)" : "SentencePiece-style BPE (supported: Prepend(\"\u2581\"), Replace(\" \", \"\u2581\"))"));
        }
        return nfc;
    }

    /// <summary>
    /// The BOS the post_processor puts before every sequence: TemplateProcessing whose single template is
    /// [SpecialToken X, Sequence A] (Llama 3's &lt;|begin_of_text|&gt;, Mistral's &lt;s&gt;) gives X; [Sequence A], ByteLevel or
    /// none (GPT-2, Qwen2) gives none. A template that appends tokens after the text (an EOS) is refused: every
    /// prompt would end in it.
    /// </summary>
    private static (string Token, int Id)? PostProcessorBos(string path, JsonElement root, Dictionary<string, int> added, Dictionary<string, int> vocab)
    {
        if (!root.TryGetProperty("post_processor", out var pp) || pp.ValueKind == JsonValueKind.Null) return null;
        var items = TypeOf(pp) == "Sequence" && pp.TryGetProperty("processors", out var seq) && seq.ValueKind == JsonValueKind.Array
            ? seq.EnumerateArray().ToList() : [pp];
        (string, int)? bos = null;
        foreach (var item in items)
        {
            string type = TypeOf(item);
            if (type == "ByteLevel") continue; // offsets only
            if (type != "TemplateProcessing")
                throw new ModelFormatException($"{path}: field 'post_processor' has '{type}'; supported: TemplateProcessing, ByteLevel");
            if (!item.TryGetProperty("single", out var single) || single.ValueKind != JsonValueKind.Array)
                throw new ModelFormatException($"{path}: field 'post_processor.single' is missing");
            var parts = single.EnumerateArray().Select(e => e.TryGetProperty("SpecialToken", out var s) ? "S:" + StringField(s, "id")
                                                             : e.TryGetProperty("Sequence", out var q) ? "Q:" + StringField(q, "id") : "?").ToList();
            if (parts.Count == 2 && parts[0].StartsWith("S:", StringComparison.Ordinal) && parts[1] == "Q:A")
            {
                string token = parts[0][2..];
                int? id = added.TryGetValue(token, out int a) ? a : vocab.TryGetValue(token, out int w) ? w : null;
                bos = (token, id ?? throw new ModelFormatException($"{path}: field 'post_processor.single' starts with '{token}', which is not a token of this file"));
            }
            else if (!(parts.Count == 1 && parts[0] == "Q:A"))
                throw new ModelFormatException($"{path}: field 'post_processor.single' is [{string.Join(", ", parts.Select(p => p.StartsWith("Q:", StringComparison.Ordinal) ? "$" + p[2..] : p.StartsWith("S:", StringComparison.Ordinal) ? p[2..] : p))}]; " +
                                               "supported: [$A] and [BOS, $A]");
        }
        return bos;
    }

    private static string? StringField(JsonElement e, string name) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static string OneLineJson(JsonElement e)
    {
        string s = TokenizerFactory.OneLine(e.GetRawText());
        return s.Length <= 120 ? s : s[..117] + "...";
    }

    private static string TypeOf(JsonElement e) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "?";

    private static Dictionary<string, int> ReadVocab(string path, JsonElement v, string field)
    {
        if (v.ValueKind != JsonValueKind.Object) throw new ModelFormatException($"{path}: field '{field}' is not an object of token -> id");
        var vocab = new Dictionary<string, int>();
        foreach (var p in v.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0)
                throw new ModelFormatException($"{path}: field '{field}' maps \"{p.Name}\" to a value that is not a non-negative integer id");
            vocab[p.Name] = id;
        }
        if (vocab.Count == 0) throw new ModelFormatException($"{path}: field '{field}' is empty");
        return vocab;
    }

    private static JsonDocument ParseFile(string path)
    {
        try { return JsonDocument.Parse(File.ReadAllBytes(path)); }
        catch (JsonException e) { throw new ModelFormatException($"{path}: not valid JSON ({TokenizerFactory.OneLine(e.Message)})"); }
    }
}
