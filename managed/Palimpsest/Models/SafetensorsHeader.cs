using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Palimpsest.Models;

/// <summary>One tensor's header entry. Begin/End are byte offsets into the data section (after the header).</summary>
public sealed record SafetensorInfo(string Name, string DType, int[] Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;

    public long ElementCount
    {
        get { long n = 1; foreach (var s in Shape) n *= s; return n; }
    }

    public string ShapeString => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// Reads and validates a safetensors header: u64 little-endian length N, N bytes of JSON,
/// then the data section. Every failure is a one-line <see cref="ModelFormatException"/>
/// naming the file and the tensor or field.
/// </summary>
internal sealed class SafetensorsHeader
{
    /// <summary>Real headers are a few hundred KB even for large models; beyond this the
    /// length is garbage (e.g. not a safetensors file) and we refuse to allocate it.</summary>
    public const long MaxHeaderBytes = 100L * 1024 * 1024;

    public required long HeaderBytes { get; init; }
    public required long DataBytes { get; init; }
    public required Dictionary<string, SafetensorInfo> Tensors { get; init; }
    public required Dictionary<string, StDType> Kinds { get; init; }
    public required Dictionary<string, string> Metadata { get; init; }

    /// <summary>Data section starts at this file offset.</summary>
    public long DataStart => 8 + HeaderBytes;

    /// <summary>The header of the safetensors file in <paramref name="fs"/> (a file, or bytes in memory); path names it in errors.</summary>
    public static SafetensorsHeader Read(Stream fs, string path)
    {
        long fileLen = fs.Length;
        if (fileLen < 8)
            throw new ModelFormatException($"{path}: truncated: {fileLen} bytes, shorter than the 8-byte header length");
        Span<byte> len8 = stackalloc byte[8];
        fs.Position = 0;
        fs.ReadExactly(len8);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(len8);
        if (n > MaxHeaderBytes)
            throw new ModelFormatException($"{path}: header length {n} is absurd (> {MaxHeaderBytes} bytes); not a safetensors file?");
        if (8 + (long)n > fileLen)
            throw new ModelFormatException($"{path}: header length {n} runs beyond the end of the file ({fileLen} bytes); truncated?");
        var json = new byte[n];
        fs.ReadExactly(json);
        return Parse(json, path, fileLen - 8 - (long)n);
    }

    private static SafetensorsHeader Parse(byte[] json, string path, long dataBytes)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(json); }
        catch (JsonException e) { throw new ModelFormatException($"{path}: header is not valid JSON ({OneLine(e.Message)})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new ModelFormatException($"{path}: header is not a JSON object (found {root.ValueKind})");
            var tensors = new Dictionary<string, SafetensorInfo>(StringComparer.Ordinal);
            var kinds = new Dictionary<string, StDType>(StringComparer.Ordinal);
            var meta = new Dictionary<string, string>(StringComparer.Ordinal);
            bool sawMeta = false;
            foreach (var p in root.EnumerateObject())
            {
                if (p.Name == "__metadata__")
                {
                    if (sawMeta) throw new ModelFormatException($"{path}: field '__metadata__' appears twice in the header");
                    sawMeta = true;
                    ReadMetadata(p.Value, path, meta);
                    continue;
                }
                if (tensors.ContainsKey(p.Name))
                    throw new ModelFormatException($"{path}: tensor '{Q(p.Name)}' appears twice in the header");
                var (info, kind) = ReadEntry(p.Name, p.Value, path, dataBytes);
                tensors.Add(p.Name, info);
                kinds.Add(p.Name, kind);
            }
            CheckNoOverlap(tensors.Values, path);
            return new SafetensorsHeader
            {
                HeaderBytes = json.Length, DataBytes = dataBytes, Tensors = tensors, Kinds = kinds, Metadata = meta,
            };
        }
    }

    private static void ReadMetadata(JsonElement v, string path, Dictionary<string, string> meta)
    {
        if (v.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{path}: field '__metadata__' must be an object of strings (found {v.ValueKind})");
        foreach (var m in v.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
                throw new ModelFormatException($"{path}: field '__metadata__.{Q(m.Name)}' must be a string (found {m.Value.ValueKind})");
            meta[m.Name] = m.Value.GetString()!;
        }
    }

    private static (SafetensorInfo, StDType) ReadEntry(string name, JsonElement e, string path, long dataBytes)
    {
        string where = $"{path}: tensor '{Q(name)}'";
        if (e.ValueKind != JsonValueKind.Object)
            throw new ModelFormatException($"{where}: entry must be an object (found {e.ValueKind})");

        if (!e.TryGetProperty("dtype", out var dt)) throw new ModelFormatException($"{where}: field 'dtype' is missing");
        if (dt.ValueKind != JsonValueKind.String) throw new ModelFormatException($"{where}: field 'dtype' must be a string (found {dt.ValueKind})");
        string dtype = dt.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtype, out var kind))
            throw new ModelFormatException($"{where}: field 'dtype': unknown dtype '{Q(dtype)}' (supported: {SafetensorsDTypes.Supported})");

        var shape = ReadInts(e, "shape", where, -1);
        var shapeArr = new int[shape.Length];
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] > int.MaxValue) throw new ModelFormatException($"{where}: field 'shape': dim {i} = {shape[i]} is too large");
            shapeArr[i] = (int)shape[i];
        }

        var off = ReadInts(e, "data_offsets", where, 2);
        long begin = off[0], end = off[1];
        if (begin > end) throw new ModelFormatException($"{where}: field 'data_offsets': begin {begin} > end {end}");
        if (end > dataBytes)
            throw new ModelFormatException($"{where}: field 'data_offsets': end {end} is beyond the data section ({dataBytes} bytes); truncated file?");

        long need;
        try
        {
            checked
            {
                need = kind.Size();
                foreach (var s in shapeArr) need *= s;
            }
        }
        catch (OverflowException) { throw new ModelFormatException($"{where}: field 'shape': element count overflows"); }
        if (end - begin != need)
            throw new ModelFormatException(
                $"{where}: field 'data_offsets' spans {end - begin} bytes but shape [{string.Join(", ", shapeArr)}] of {dtype} needs {need}");
        return (new SafetensorInfo(name, dtype, shapeArr, begin, end), kind);
    }

    /// <summary>A JSON array of non-negative integers (of exactly `count` items when count >= 0).</summary>
    private static long[] ReadInts(JsonElement e, string field, string where, int count)
    {
        if (!e.TryGetProperty(field, out var a)) throw new ModelFormatException($"{where}: field '{field}' is missing");
        if (a.ValueKind != JsonValueKind.Array) throw new ModelFormatException($"{where}: field '{field}' must be an array (found {a.ValueKind})");
        int len = a.GetArrayLength();
        if (count >= 0 && len != count) throw new ModelFormatException($"{where}: field '{field}' must have {count} items, has {len}");
        var r = new long[len];
        int i = 0;
        foreach (var x in a.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt64(out long v))
                throw new ModelFormatException($"{where}: field '{field}': item {i} is not an integer");
            if (v < 0) throw new ModelFormatException($"{where}: field '{field}': item {i} is negative ({v})");
            r[i++] = v;
        }
        return r;
    }

    private static void CheckNoOverlap(IEnumerable<SafetensorInfo> all, string path)
    {
        // Empty tensors occupy no bytes and may sit anywhere; gaps between tensors are allowed.
        var sorted = all.Where(t => t.End > t.Begin).OrderBy(t => t.Begin).ToList();
        for (int i = 1; i < sorted.Count; i++)
        {
            SafetensorInfo a = sorted[i - 1], b = sorted[i];
            if (b.Begin < a.End)
                throw new ModelFormatException(
                    $"{path}: tensor '{Q(b.Name)}' bytes [{b.Begin}, {b.End}) overlap tensor '{Q(a.Name)}' bytes [{a.Begin}, {a.End})");
        }
    }

    private static string OneLine(string s) => s.Split('\n')[0].TrimEnd('\r');

    /// <summary>Names come from the file: escape control characters so a message stays one line.</summary>
    internal static string Q(string s)
    {
        if (!s.Any(char.IsControl)) return s;
        var b = new StringBuilder();
        foreach (var c in s) b.Append(char.IsControl(c) ? $"\\u{(int)c:x4}" : c);
        return b.ToString();
    }
}
