using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using Palimpsest.Models;

namespace Palimpsest.Tokenization;

/// <summary>
/// The parts of a Hugging Face byte-level BPE tokenizer that encoding needs: vocabulary (keys in
/// GPT-2's byte-to-unicode alphabet), merges in priority order, special tokens and the
/// pre-tokenizer regex. Read from tokenizer.json or from the older vocab.json + merges.txt pair.
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

    public BpeOptions ToOptions()
    {
        var vocab = new Dictionary<string, int>(Vocab);
        // Special tokens must also be in the vocabulary, or the library cannot map them to ids.
        foreach (var (k, v) in Special) vocab[k] = v;
        return new BpeOptions(vocab)
        {
            Merges = Merges,
            ByteLevel = true,
            SpecialTokens = Special.Count > 0 ? Special : null,
            PreTokenizer = new RegexPreTokenizer(new Regex(Pattern, RegexOptions.Compiled), Special.Count > 0 ? Special : null),
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
            throw new ModelFormatException($"{path}: field 'model.type' is '{type}'; only byte-level BPE tokenizer.json files are supported");

        string? pattern = PreTokenizerPattern(path, root);
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

        var special = new Dictionary<string, int>();
        if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
            foreach (var a in added.EnumerateArray())
                if (a.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String && a.TryGetProperty("id", out var id) && id.TryGetInt32(out int idv))
                    special[c.GetString()!] = idv;

        return new HfBpeFiles { Origin = path, Vocab = vocab, Merges = merges, Special = special, Pattern = pattern ?? Gpt2Pattern };
    }

    /// <summary>
    /// Byte-level pre-tokenizer: plain ByteLevel (use_regex) means GPT-2's regex; Sequence[Split(regex), ByteLevel]
    /// (Llama 3, Qwen style) carries its own. Anything else is not a byte-level BPE and is refused.
    /// </summary>
    private static string? PreTokenizerPattern(string path, JsonElement root)
    {
        if (!root.TryGetProperty("pre_tokenizer", out var pt) || pt.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{path}: field 'pre_tokenizer' is missing; only byte-level BPE tokenizer.json files are supported");
        string ptType = TypeOf(pt);
        if (ptType == "ByteLevel")
        {
            if (pt.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True)
                throw new ModelFormatException($"{path}: field 'pre_tokenizer.add_prefix_space' is true, which is not supported");
            return Gpt2Pattern;
        }
        if (ptType == "Sequence" && pt.TryGetProperty("pretokenizers", out var seq) && seq.ValueKind == JsonValueKind.Array)
        {
            string? pattern = null; bool byteLevel = false;
            foreach (var p in seq.EnumerateArray())
            {
                string pType = TypeOf(p);
                if (pType == "Split" && p.TryGetProperty("pattern", out var pat) && pat.TryGetProperty("Regex", out var rx) && rx.ValueKind == JsonValueKind.String)
                    pattern = rx.GetString();
                else if (pType == "ByteLevel")
                {
                    byteLevel = true;
                    if (p.TryGetProperty("use_regex", out var ur) && ur.ValueKind != JsonValueKind.False) pattern ??= Gpt2Pattern;
                }
                else throw new ModelFormatException($"{path}: pre-tokenizer '{pType}' inside 'pre_tokenizer' is not supported");
            }
            if (byteLevel) return pattern ?? Gpt2Pattern;
        }
        throw new ModelFormatException($"{path}: field 'pre_tokenizer' is '{ptType}'; only byte-level BPE tokenizer.json files are supported");
    }

    private static string TypeOf(JsonElement e) =>
        e.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()! : "?";

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
