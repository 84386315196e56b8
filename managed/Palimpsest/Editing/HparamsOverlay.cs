using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;

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

    /// <summary>A user's hyper-parameters JSON as an object; ArgumentException naming where when it is not valid JSON or not an object.</summary>
    public static JsonObject ParseObject(string json, string where)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json); }
        catch (JsonException e) { throw new ArgumentException($"{where}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        return node as JsonObject ?? throw new ArgumentException($"{where}: top level must be a JSON object");
    }

    /// <param name="optional">fields the defaults' JSON leaves out (written only when set) that are nevertheless known</param>
    public static string Merge(string defaultsJson, string userJson, string where, IReadOnlyList<string>? ignored = null, IReadOnlyList<string>? optional = null)
    {
        var u = ParseObject(userJson, where);
        var merged = JsonNode.Parse(defaultsJson)!.AsObject();
        foreach (var (key, value) in u.ToList())
        {
            if (!merged.ContainsKey(key) && !(optional?.Contains(key) ?? false))
            {
                if (ignored is not null && ignored.Contains(key)) continue;
                throw new ArgumentException($"{where}: unknown field '{key}' (known: {string.Join(", ", merged.Select(p => p.Key).Concat(optional ?? []))})");
            }
            merged[key] = value?.DeepClone();
        }
        return merged.ToJsonString();
    }

    /// <summary>The fields of userJson that are in <paramref name="ignored"/> (the reference's harness settings), in file order.</summary>
    public static IReadOnlyList<string> Ignored(string userJson, IReadOnlyList<string> ignored) =>
        JsonNode.Parse(userJson) is JsonObject u ? u.Select(p => p.Key).Where(ignored.Contains).ToList() : [];

    /// <summary>
    /// The merged JSON as the hparams record; a value of the wrong type is an ArgumentException that
    /// names the field, the kind of value it takes and the one given (not the serializer's type names).
    /// </summary>
    public static T Deserialize<T>(string mergedJson, JsonTypeInfo<T> info, string where)
    {
        try { return JsonSerializer.Deserialize(mergedJson, info)!; }
        catch (JsonException e)
        {
            string field = e.Path is { Length: > 2 } p && p.StartsWith("$.", StringComparison.Ordinal) ? p[2..].Split('[')[0] : "";
            var prop = info.Properties.FirstOrDefault(x => x.Name == field);
            if (prop is null) throw new ArgumentException($"{where}: not a valid hyper-parameter file");
            string given = JsonNode.Parse(mergedJson)?[field]?.ToJsonString() ?? "null";
            if (given.Length > 60) given = given[..57] + "...";
            throw new ArgumentException($"{where}: field '{field}' must be {Kind(prop.PropertyType)} (got {given})");
        }
    }

    /// <summary>What a hyper-parameter of this type takes, in words.</summary>
    internal static string Kind(Type t) =>
        Nullable.GetUnderlyingType(t) is { } inner ? Kind(inner) + " or null"
        : t == typeof(int) || t == typeof(long) ? "a whole number"
        : t == typeof(double) || t == typeof(float) ? "a number"
        : t == typeof(bool) ? "true or false"
        : t == typeof(string) ? "a string"
        : t.IsArray ? $"a list of {Plural(t.GetElementType()!)}"
        : "a value of another kind";

    private static string Plural(Type t) =>
        t.IsArray ? $"lists of {Plural(t.GetElementType()!)}"
        : t == typeof(int) || t == typeof(long) ? "whole numbers"
        : t == typeof(double) || t == typeof(float) ? "numbers"
        : t == typeof(string) ? "strings"
        : "values";
}
