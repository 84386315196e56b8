using System.Text.Json;
using Palimpsest.Models;

namespace Palimpsest.Tokenization;

/// <summary>
/// What tokenizer_config.json says about BOS/EOS insertion: add_bos_token (LlamaTokenizer(Fast) rebuilds its
/// post-processor from it, so it wins over tokenizer.json's) and bos_token. add_eos_token true would end every
/// prompt with EOS and is refused. A missing file says nothing.
/// </summary>
internal sealed record TokenizerConfig(string Path, bool? AddBos, string? BosName)
{
    public static TokenizerConfig Read(string path)
    {
        if (!File.Exists(path)) return new TokenizerConfig(path, null, null);
        JsonElement root;
        try { using var doc = JsonDocument.Parse(File.ReadAllBytes(path)); root = doc.RootElement.Clone(); }
        catch (JsonException e) { throw new ModelFormatException($"{path}: not valid JSON ({TokenizerFactory.OneLine(e.Message)})"); }
        if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException($"{path}: not a JSON object");
        if (Bool(path, root, "add_eos_token") == true)
            throw new ModelFormatException($"{path}: field 'add_eos_token' is true; prompts ending in EOS are not supported");
        // bos_token is a string or an AddedToken object {"content": ...}.
        string? bos = root.TryGetProperty("bos_token", out var b) ? b.ValueKind switch
        {
            JsonValueKind.String => b.GetString(),
            JsonValueKind.Object when b.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String => c.GetString(),
            _ => null,
        } : null;
        return new TokenizerConfig(path, Bool(path, root, "add_bos_token"), bos);
    }

    /// <summary>The id of bos_token among the added tokens or the vocabulary, or null.</summary>
    public int? BosToken(IReadOnlyDictionary<string, int> added, IReadOnlyDictionary<string, int> vocab) =>
        BosName is null ? null : added.TryGetValue(BosName, out int a) ? a : vocab.TryGetValue(BosName, out int v) ? v : null;

    private static bool? Bool(string path, JsonElement root, string field)
    {
        if (!root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ModelFormatException($"{path}: field '{field}' is {v.GetRawText()}; expected true or false"),
        };
    }
}
