using System.Text.Json;

namespace Palimpsest.Editing.Data;

/// <summary>
/// Typed access to one JSON record's fields; every failure is a <see cref="DatasetFormatException"/>
/// naming the file, record index and field (the whole point: one clear line for a bad file).
/// </summary>
internal readonly struct RecordFields
{
    private readonly string _file;
    private readonly int _index;
    private readonly JsonElement _e;
    private readonly string _prefix; // "requested_rewrite." for nested objects, so errors name the full path

    public RecordFields(string file, int index, JsonElement e, string prefix = "")
    {
        _file = file; _index = index; _e = e; _prefix = prefix;
        if (e.ValueKind != JsonValueKind.Object)
            throw Error(prefix.Length == 0 ? null : prefix.TrimEnd('.'), $"expected a JSON object, found {Kind(e)}");
    }

    public bool Has(string name) => _e.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    public DatasetFormatException Error(string? field, string problem) =>
        new(_file, _index, field is null ? null : _prefix + field, problem);

    public string String(string name)
    {
        if (!_e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) throw Error(name, "missing");
        if (v.ValueKind != JsonValueKind.String) throw Error(name, $"expected a string, found {Kind(v)}");
        var s = v.GetString()!;
        if (string.IsNullOrWhiteSpace(s)) throw Error(name, "is empty");
        return s;
    }

    public string? OptionalString(string name) => Has(name) ? String(name) : null;

    /// <summary>A string, or the first element of a list of strings (zsRE's "answers", "loc_ans" in some dumps).</summary>
    /// <summary>
    /// A string, or a list holding exactly one (an edit has one new target: a list of several would
    /// silently edit towards its first, so it is refused naming the record and field).
    /// </summary>
    public string StringOrOnly(string name)
    {
        if (_e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array)
        {
            var list = StringList(name);
            if (list.Count != 1) throw Error(name, $"is a list of {list.Count} strings; an edit has one target (give a string)");
            return list[0];
        }
        return String(name);
    }

    public string StringOrFirst(string name)
    {
        if (_e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array)
        {
            var list = StringList(name);
            if (list.Count == 0) throw Error(name, "is an empty list");
            return list[0];
        }
        return String(name);
    }

    /// <summary>A list of strings; a single string is read as a one-element list; absent = empty.</summary>
    public IReadOnlyList<string> StringList(string name)
    {
        if (!_e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return [];
        if (v.ValueKind == JsonValueKind.String) return [String(name)];
        if (v.ValueKind != JsonValueKind.Array) throw Error(name, $"expected a list of strings, found {Kind(v)}");
        var list = new List<string>();
        int i = 0;
        foreach (var x in v.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.String) throw Error($"{name}[{i}]", $"expected a string, found {Kind(x)}");
            list.Add(x.GetString()!);
            i++;
        }
        return list;
    }

    /// <summary>A string field, or an object holding it under <paramref name="inner"/> (ROME's {"str": ...}).</summary>
    public string StringOrNested(string name, string inner)
    {
        if (_e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Object) return Object(name).String(inner);
        return String(name);
    }

    public RecordFields Object(string name)
    {
        if (!_e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) throw Error(name, "missing");
        return new RecordFields(_file, _index, v, _prefix + name + ".");
    }

    /// <summary>An id that may be a number or a string (case_id, known_id); null when absent.</summary>
    public string? Id(string name)
    {
        if (!_e.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch
        {
            JsonValueKind.Number => v.GetRawText(),
            JsonValueKind.String => v.GetString(),
            _ => throw Error(name, $"expected a number or string, found {Kind(v)}"),
        };
    }

    /// <summary>
    /// The template of a filled prompt: the subject's first occurrence becomes "{}" (a prompt that
    /// already holds exactly one "{}" is kept). Throws naming <paramref name="field"/> when the subject is not in it.
    /// </summary>
    public string TemplateFrom(string field, string filled, string subject)
    {
        if (filled.Contains("{}")) return filled;
        int at = filled.IndexOf(subject, StringComparison.Ordinal);
        if (at < 0) throw Error(field, $"does not contain the subject \"{subject}\": \"{filled}\"");
        return string.Concat(filled.AsSpan(0, at), "{}", filled.AsSpan(at + subject.Length));
    }

    private static string Kind(JsonElement v) => v.ValueKind.ToString().ToLowerInvariant();
}
