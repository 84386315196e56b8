using System.Text.Json;
using System.Text.Json.Nodes;

namespace Palimpsest.Editing;

/// <summary>
/// Reads a hyper-parameter file as changes to a method's defaults. The source-generated
/// deserialiser sets every init-only property, absent ones to zero, so a partial file would
/// silently zero the rest; we lay the user's fields over the serialised defaults instead, and an
/// unknown field (a typo) is an error naming it.
/// </summary>
internal static class HparamsOverlay
{
    public static string Merge(string defaultsJson, string userJson, string where)
    {
        JsonNode? user;
        try { user = JsonNode.Parse(userJson); }
        catch (JsonException e) { throw new ArgumentException($"{where}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        if (user is not JsonObject u) throw new ArgumentException($"{where}: top level must be a JSON object");
        var merged = JsonNode.Parse(defaultsJson)!.AsObject();
        foreach (var (key, value) in u.ToList())
        {
            if (!merged.ContainsKey(key))
                throw new ArgumentException($"{where}: unknown field '{key}' (known: {string.Join(", ", merged.Select(p => p.Key))})");
            merged[key] = value?.DeepClone();
        }
        return merged.ToJsonString();
    }
}
