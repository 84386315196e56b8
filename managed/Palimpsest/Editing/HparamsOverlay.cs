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
    /// <summary>Norm-Anchor Scaling's fields of ROME, MEMIT and AlphaEdit, which their JSON leaves out while NAS is off (so that records made before NAS read the same).</summary>
    public static readonly IReadOnlyList<string> NasFields = ["norm_anchor", "nas_restart", "nas_norm"];

    public static string Merge(string defaultsJson, string userJson, string where, IReadOnlyList<string>? ignored = null, IReadOnlyList<string>? optional = null) =>
        Merge(defaultsJson, userJson, where, ignored, optional, out _);

    /// <param name="optional">fields the defaults' JSON leaves out (written only when set) that are nevertheless known</param>
    public static string Merge(string defaultsJson, string userJson, string where, IReadOnlyList<string>? ignored, IReadOnlyList<string>? optional, out IReadOnlyList<string> skipped)
    {
        JsonNode? user;
        try { user = JsonNode.Parse(userJson); }
        catch (JsonException e) { throw new ArgumentException($"{where}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        if (user is not JsonObject u) throw new ArgumentException($"{where}: top level must be a JSON object");
        var merged = JsonNode.Parse(defaultsJson)!.AsObject();
        var skip = new List<string>();
        foreach (var (key, value) in u.ToList())
        {
            if (!merged.ContainsKey(key) && !(optional?.Contains(key) ?? false))
            {
                if (ignored is not null && ignored.Contains(key)) { skip.Add(key); continue; }
                throw new ArgumentException($"{where}: unknown field '{key}' (known: {string.Join(", ", merged.Select(p => p.Key).Concat(optional ?? []))})");
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
