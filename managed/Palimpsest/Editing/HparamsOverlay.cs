using System.Text.Json;
using System.Text.Json.Nodes;

namespace Palimpsest.Editing;

/// <summary>
/// Reads a hyper-parameter file as changes to a method's defaults. The source-generated
/// deserialiser sets every init-only property, absent ones to zero, so a partial file would
/// silently zero the rest; we lay the user's fields over the serialised defaults instead, and an
/// unknown field (a typo) is an error naming it. A reference implementation's own files carry
/// fields that configure its harness (model paths, datasets, devices): those named in
/// <c>ignored</c> are accepted and left out (<see cref="Ignored"/> lists the ones a file had).
/// </summary>
internal static class HparamsOverlay
{
    public static string Merge(string defaultsJson, string userJson, string where, IReadOnlyList<string>? ignored = null) =>
        Merge(defaultsJson, userJson, where, ignored, out _);

    public static string Merge(string defaultsJson, string userJson, string where, IReadOnlyList<string>? ignored, out IReadOnlyList<string> skipped)
    {
        JsonNode? user;
        try { user = JsonNode.Parse(userJson); }
        catch (JsonException e) { throw new ArgumentException($"{where}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        if (user is not JsonObject u) throw new ArgumentException($"{where}: top level must be a JSON object");
        var merged = JsonNode.Parse(defaultsJson)!.AsObject();
        var skip = new List<string>();
        foreach (var (key, value) in u.ToList())
        {
            if (!merged.ContainsKey(key))
            {
                if (ignored is not null && ignored.Contains(key)) { skip.Add(key); continue; }
                throw new ArgumentException($"{where}: unknown field '{key}' (known: {string.Join(", ", merged.Select(p => p.Key))})");
            }
            merged[key] = value?.DeepClone();
        }
        skipped = skip;
        return merged.ToJsonString();
    }

    /// <summary>The fields of userJson that are in <paramref name="ignored"/> (the reference's harness settings), in file order.</summary>
    public static IReadOnlyList<string> Ignored(string userJson, IReadOnlyList<string> ignored) =>
        JsonNode.Parse(userJson) is JsonObject u ? u.Select(p => p.Key).Where(ignored.Contains).ToList() : [];
}
