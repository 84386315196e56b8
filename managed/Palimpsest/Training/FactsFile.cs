using System.Text.Json;

namespace Palimpsest.Training;

/// <summary>A relation and the phrasings ("templates", "{}" = the subject) a fact of it can be asked in.</summary>
public sealed record FactRelation(string Id, IReadOnlyList<string> Templates);

/// <summary>One fact: (subject, relation, answer). Answer is appended after one space.</summary>
public sealed record Fact(string Subject, string Relation, string Answer);

/// <summary>
/// A facts file: relations with several phrasings each, and facts over them. The training data of
/// our editable fact models (`palimpsest train --facts FILE`):
/// <code>{"relations": [{"id": "capital", "templates": ["The capital of {} is", ...]}],
///  "facts": [{"subject": "France", "relation": "capital", "answer": "Paris"}]}</code>
/// </summary>
public sealed class FactsFile
{
    public required IReadOnlyList<FactRelation> Relations { get; init; }
    public required IReadOnlyList<Fact> Facts { get; init; }

    public FactRelation Relation(string id) => Relations.First(r => r.Id == id);

    /// <summary>Reads and validates a facts file; every problem is a <see cref="FormatException"/> naming the file and the field.</summary>
    public static FactsFile Load(string path)
    {
        if (!File.Exists(path)) throw new FormatException($"{path}: facts file not found");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new FormatException($"{path}: not valid JSON ({e.Message})"); }
        using (doc) return Parse(doc.RootElement, path);
    }

    public static FactsFile Parse(JsonElement root, string path)
    {
        if (root.ValueKind != JsonValueKind.Object) throw new FormatException($"{path}: expected an object with 'relations' and 'facts'");
        string Str(JsonElement e, string field, string where)
        {
            if (!e.TryGetProperty(field, out var v) || v.ValueKind != JsonValueKind.String || string.IsNullOrWhiteSpace(v.GetString()))
                throw new FormatException($"{path}: {where}: field '{field}' must be a non-empty string");
            return v.GetString()!;
        }
        JsonElement Arr(JsonElement e, string field, string where)
        {
            if (!e.TryGetProperty(field, out var v) || v.ValueKind != JsonValueKind.Array)
                throw new FormatException($"{path}: {where}: field '{field}' must be an array");
            return v;
        }
        var relations = new List<FactRelation>();
        var ids = new HashSet<string>();
        int ri = 0;
        foreach (var r in Arr(root, "relations", "top level").EnumerateArray())
        {
            string where = $"relations[{ri++}]";
            string id = Str(r, "id", where);
            if (!ids.Add(id)) throw new FormatException($"{path}: {where}: duplicate relation id '{id}'");
            var templates = new List<string>();
            int ti = 0;
            foreach (var t in Arr(r, "templates", where).EnumerateArray())
            {
                string s = t.ValueKind == JsonValueKind.String ? t.GetString()! : "";
                int first = s.IndexOf("{}", StringComparison.Ordinal);
                if (first < 0 || s.IndexOf("{}", first + 2, StringComparison.Ordinal) >= 0)
                    throw new FormatException($"{path}: {where}.templates[{ti}]: must contain '{{}}' exactly once");
                if (s.EndsWith(' ')) throw new FormatException($"{path}: {where}.templates[{ti}]: must not end with a space (the answer is appended after one)");
                templates.Add(s); ti++;
            }
            if (templates.Count < 2) throw new FormatException($"{path}: {where}: needs at least 2 templates (one is held out as the paraphrase)");
            relations.Add(new FactRelation(id, templates));
        }
        var facts = new List<Fact>();
        var seen = new HashSet<(string, string)>();
        int fi = 0;
        foreach (var f in Arr(root, "facts", "top level").EnumerateArray())
        {
            string where = $"facts[{fi++}]";
            var fact = new Fact(Str(f, "subject", where), Str(f, "relation", where), Str(f, "answer", where));
            if (!ids.Contains(fact.Relation)) throw new FormatException($"{path}: {where}: unknown relation '{fact.Relation}'");
            if (!seen.Add((fact.Subject, fact.Relation))) throw new FormatException($"{path}: {where}: duplicate fact for ({fact.Subject}, {fact.Relation})");
            facts.Add(fact);
        }
        if (facts.Count == 0) throw new FormatException($"{path}: no facts");
        return new FactsFile { Relations = relations, Facts = facts };
    }

    /// <summary>Several files as one (relation ids must not clash unless their templates are identical).</summary>
    public static FactsFile Merge(IReadOnlyList<FactsFile> files)
    {
        var rel = new Dictionary<string, FactRelation>();
        foreach (var r in files.SelectMany(f => f.Relations))
        {
            if (rel.TryGetValue(r.Id, out var prev) && !prev.Templates.SequenceEqual(r.Templates))
                throw new FormatException($"relation '{r.Id}' is defined twice with different templates");
            rel[r.Id] = r;
        }
        var facts = files.SelectMany(f => f.Facts).ToList();
        var dup = facts.GroupBy(f => (f.Subject, f.Relation)).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new FormatException($"fact ({dup.Key.Subject}, {dup.Key.Relation}) appears in more than one facts file");
        return new FactsFile { Relations = rel.Values.ToList(), Facts = facts };
    }

    /// <summary>Writes the file (indented JSON, the format <see cref="Load"/> reads).</summary>
    public void Save(string path)
    {
        using var fs = File.Create(path);
        using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteStartArray("relations");
        foreach (var r in Relations)
        {
            w.WriteStartObject(); w.WriteString("id", r.Id);
            w.WriteStartArray("templates"); foreach (var t in r.Templates) w.WriteStringValue(t); w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("facts");
        foreach (var f in Facts)
        {
            w.WriteStartObject();
            w.WriteString("subject", f.Subject); w.WriteString("relation", f.Relation); w.WriteString("answer", f.Answer);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }
}
