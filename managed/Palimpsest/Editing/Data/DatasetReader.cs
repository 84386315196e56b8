using System.Text.Json;

namespace Palimpsest.Editing.Data;

/// <summary>
/// Reads edit requests from CounterFact (EasyEdit or ROME layout), zsRE or known_1000 JSON files
/// (a top-level array of records). The format is detected from the first record; the array is
/// streamed, so <c>limit</c> stops reading early. Malformed input gives one
/// <see cref="DatasetFormatException"/> line naming the file, record index and field.
/// Targets are kept as in the data (no leading space): callers tokenise "{prompt} {target}".
/// </summary>
public static class DatasetReader
{
    /// <summary>The requests of <see cref="LoadRecords"/>.</summary>
    public static IReadOnlyList<EditRequest> Load(string path, int? limit = null, Action<DatasetFormatException>? skipped = null) =>
        LoadRecords(path, limit, skipped).Select(r => r.Request).ToArray();

    /// <summary>
    /// Up to <paramref name="limit"/> records. A record whose JSON is valid but whose content is not
    /// (an empty target: zsRE's train-1k has two) throws, unless <paramref name="skipped"/> is given:
    /// then it is handed the error and the record is left out (limit counts kept records).
    /// </summary>
    public static IReadOnlyList<DatasetRecord> LoadRecords(string path, int? limit = null, Action<DatasetFormatException>? skipped = null)
    {
        if (limit is < 0) throw new ArgumentOutOfRangeException(nameof(limit), "limit must be >= 0");
        if (!File.Exists(path)) throw new FileNotFoundException($"dataset file '{path}' not found", path);
        var list = new List<DatasetRecord>();
        if (limit == 0) return list;
        string name = Path.GetFileName(path);
        DatasetFormat? format = null;
        int index = 0;
        using var stream = File.OpenRead(path);
        if (FirstSignificantByte(stream) != (byte)'[')
            throw new DatasetFormatException(name, -1, null, "expected a JSON array of records");
        try
        {
            foreach (var e in JsonSerializer.DeserializeAsyncEnumerable(stream, DatasetJson.Default.JsonElement).ToBlockingEnumerable())
            {
                var r = new RecordFields(name, index, e);
                format ??= Detect(r);
                index++;
                DatasetRecord rec;
                try
                {
                    rec = Parse(r, format.Value, index - 1);
                    try { rec.Request.Validate($"{name}: record {index - 1}"); }
                    catch (ArgumentException ex) { throw new DatasetFormatException(name, index - 1, null, StripWhere(ex.Message, name, index - 1)); }
                }
                catch (DatasetFormatException ex) when (skipped is not null)
                {
                    skipped(ex);
                    continue;
                }
                list.Add(rec);
                if (list.Count == limit) break;
            }
        }
        catch (JsonException ex)
        {
            // `index` records were read whole, so the broken one is record `index`.
            string at = ex.LineNumber is long line ? $" (line {line + 1}, byte {ex.BytePositionInLine + 1})" : "";
            throw new DatasetFormatException(name, index, null, "malformed JSON" + at, ex);
        }
        if (list.Count == 0) throw new DatasetFormatException(name, -1, null, "holds no records");
        return list;
    }

    /// <summary>The layout of a record, from the fields it has.</summary>
    public static DatasetFormat Detect(JsonElement record) => Detect(new RecordFields("(record)", 0, record));

    private static DatasetFormat Detect(RecordFields r)
    {
        if (r.Has("requested_rewrite")) return DatasetFormat.CounterFactRome;
        if (r.Has("src") && r.Has("alt")) return DatasetFormat.Zsre;
        if (r.Has("attribute") && (r.Has("template") || r.Has("prompt"))) return DatasetFormat.KnownFacts;
        if (r.Has("prompt") && r.Has("target_new")) return DatasetFormat.CounterFactEasyEdit;
        throw r.Error(null, "unknown dataset format: expected CounterFact (prompt, subject, target_new, ...), " +
            "ROME CounterFact (requested_rewrite, ...), zsRE (src, subject, alt, ...) or known facts (subject, attribute, template)");
    }

    private static DatasetRecord Parse(RecordFields r, DatasetFormat f, int index) => f switch
    {
        DatasetFormat.CounterFactEasyEdit => CounterFactRecords.EasyEdit(r),
        DatasetFormat.CounterFactRome => CounterFactRecords.Rome(r),
        DatasetFormat.Zsre => ZsreRecords.Zsre(r, index),
        DatasetFormat.KnownFacts => KnownFactRecords.Known(r),
        _ => throw new ArgumentOutOfRangeException(nameof(f)),
    };

    // The first byte that is not whitespace or a UTF-8 byte-order mark; the stream is rewound.
    private static int FirstSignificantByte(Stream s)
    {
        int b;
        do b = s.ReadByte(); while (b is ' ' or '\t' or '\r' or '\n' or 0xEF or 0xBB or 0xBF);
        s.Position = 0;
        return b;
    }

    private static string StripWhere(string message, string name, int index)
    {
        string where = $"{name}: record {index}: ";
        return message.StartsWith(where, StringComparison.Ordinal) ? message[where.Length..] : message;
    }
}

/// <summary>Source-generated (trim-safe) JSON for streaming a dataset's records.</summary>
[System.Text.Json.Serialization.JsonSerializable(typeof(JsonElement))]
internal sealed partial class DatasetJson : System.Text.Json.Serialization.JsonSerializerContext;
