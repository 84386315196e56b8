using System.Text.Json;

namespace Palimpsest.Cli.Serve;

/// <summary>
/// A request the server refuses: its HTTP status and an OpenAI-style error body
/// <c>{"error": {"message", "type", "param", "code"}}</c> naming the field at fault.
/// </summary>
internal sealed class ApiError(int status, string message, string? param = null, string type = "invalid_request_error") : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string Type { get; } = type;

    public static ApiError BadField(string field, string what) => new(400, $"{field}: {what}", field);

    public object Body() => new { error = new { message = Message, type = Type, param = Param, code = (string?)null } };
}

/// <summary>
/// A JSON request body read strictly: an object whose every field is one the endpoint knows (an
/// unknown or misspelt field is refused by name, never ignored), each of the expected type and range.
/// </summary>
internal sealed class StrictJson
{
    private readonly JsonElement _obj;
    private readonly string _prefix;

    private StrictJson(JsonElement obj, string prefix) { _obj = obj; _prefix = prefix; }

    /// <summary>The body as an object with only <paramref name="known"/> fields.</summary>
    public static StrictJson Parse(ReadOnlySpan<byte> body, params string[] known)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(body.ToArray()); }
        catch (JsonException e) { throw new ApiError(400, $"body: not valid JSON ({(e.LineNumber is { } l ? $"line {l + 1}, byte {e.BytePositionInLine}" : "at the start")})", "body"); }
        return Of(doc.RootElement, "", "body", known);
    }

    /// <summary>A nested object (a batch's request), its fields named "requests[2].subject".</summary>
    public static StrictJson Of(JsonElement e, string prefix, string what, params string[] known)
    {
        if (e.ValueKind != JsonValueKind.Object) throw new ApiError(400, $"{what}: expected a JSON object", what);
        foreach (var p in e.EnumerateObject())
            if (!known.Contains(p.Name, StringComparer.Ordinal))
                throw ApiError.BadField(prefix + p.Name, $"unknown field (expected one of {string.Join(", ", known)})");
        return new StrictJson(e, prefix);
    }

    public bool Has(string name) => _obj.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null;

    public JsonElement? Raw(string name) => Has(name) ? _obj.GetProperty(name) : null;

    public string? String(string name, bool required = false, int maxLength = int.MaxValue)
    {
        if (!Has(name))
        {
            if (required) throw ApiError.BadField(_prefix + name, "required");
            return null;
        }
        var v = _obj.GetProperty(name);
        if (v.ValueKind != JsonValueKind.String) throw ApiError.BadField(_prefix + name, $"expected a string, got {Kind(v)}");
        string s = v.GetString()!;
        if (s.Length > maxLength) throw ApiError.BadField(_prefix + name, $"{s.Length} characters, longer than the limit of {maxLength}");
        return s;
    }

    public int Int(string name, int fallback, int min, int max)
    {
        if (!Has(name)) return fallback;
        var v = _obj.GetProperty(name);
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out long x)) throw ApiError.BadField(_prefix + name, $"expected an integer, got {Kind(v)}");
        if (x < min || x > max) throw ApiError.BadField(_prefix + name, $"must be in [{min}, {max}] (got {x})");
        return (int)x;
    }

    public double Double(string name, double fallback, double min, double max)
    {
        if (!Has(name)) return fallback;
        var v = _obj.GetProperty(name);
        if (v.ValueKind != JsonValueKind.Number) throw ApiError.BadField(_prefix + name, $"expected a number, got {Kind(v)}");
        double x = v.GetDouble();
        if (!(x >= min && x <= max)) throw ApiError.BadField(_prefix + name, $"must be in [{min}, {max}] (got {x})");
        return x;
    }

    public bool Bool(string name)
    {
        if (!Has(name)) return false;
        var v = _obj.GetProperty(name);
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiError.BadField(_prefix + name, $"expected true or false, got {Kind(v)}"),
        };
    }

    /// <summary>A string or a list of strings (OpenAI's stop), at most <paramref name="maxItems"/>.</summary>
    public IReadOnlyList<string> Strings(string name, int maxItems, int maxLength)
    {
        if (!Has(name)) return [];
        var v = _obj.GetProperty(name);
        var list = new List<string>();
        if (v.ValueKind == JsonValueKind.String) list.Add(v.GetString()!);
        else if (v.ValueKind == JsonValueKind.Array)
            foreach (var item in v.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.String) throw ApiError.BadField(_prefix + name, $"expected strings, got {Kind(item)} in the list");
                list.Add(item.GetString()!);
            }
        else throw ApiError.BadField(_prefix + name, $"expected a string or a list of strings, got {Kind(v)}");
        if (list.Count > maxItems) throw ApiError.BadField(_prefix + name, $"{list.Count} items, more than the limit of {maxItems}");
        foreach (var s in list)
            if (s.Length == 0 || s.Length > maxLength) throw ApiError.BadField(_prefix + name, $"each item must have 1 to {maxLength} characters");
        return list;
    }

    private static string Kind(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "a list",
        JsonValueKind.Object => "an object",
        _ => "null",
    };
}
