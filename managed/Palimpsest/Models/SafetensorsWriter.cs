using System.Buffers;
using System.Runtime.InteropServices;
using System.Text.Json;
using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>
/// Writes safetensors files atomically: the bytes go to a temporary file beside the target,
/// are flushed to disk, and then renamed over it, so a crash or an error never leaves a
/// half-written checkpoint (or destroys the previous one). Tensors are laid out in the given
/// order; the header is padded with spaces to a multiple of 8 bytes so the data is aligned.
/// </summary>
public static class SafetensorsWriter
{
    /// <summary>Float tensors: F64/F32/F16/BF16, converted from the tensor's data with correct rounding.</summary>
    public static void Write(string path, IReadOnlyList<(string Name, HostTensor Tensor, string DType)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null) =>
        WriteAtomic(path, FloatEntries(tensors, path), metadata);

    /// <summary>Float tensors as the bytes of a safetensors file, in memory (e.g. one BLOB of a journal).</summary>
    public static byte[] ToBytes(IReadOnlyList<(string Name, HostTensor Tensor, string DType)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = FloatEntries(tensors, "safetensors bytes");
        byte[] header = BuildHeader(entries, metadata);
        var ms = new MemoryStream();
        WriteTo(ms, header, entries);
        return ms.ToArray();
    }

    private static List<Entry> FloatEntries(IReadOnlyList<(string Name, HostTensor Tensor, string DType)> tensors, string where)
    {
        var entries = new List<Entry>(tensors.Count);
        foreach (var (name, t, dtype) in tensors)
        {
            var kind = ParseDType(name, dtype);
            if (!kind.IsFloat())
                throw new ArgumentException($"{where}: tensor '{name}': dtype {dtype} is not a float dtype; write integer tensors with the raw-bytes overload");
            entries.Add(new Entry(name, kind, t.Shape, (s, _) => WriteHost(s, t, kind)));
        }
        return entries;
    }

    /// <summary>Any supported dtype from raw little-endian bytes (e.g. I64 token ids). The data
    /// length is checked against the shape as each tensor is written.</summary>
    public static void Write(string path, IReadOnlyList<(string Name, string DType, int[] Shape, byte[] Data)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = new List<Entry>(tensors.Count);
        foreach (var (name, dtype, shape, data) in tensors)
        {
            var kind = ParseDType(name, dtype);
            entries.Add(new Entry(name, kind, shape, (s, need) =>
            {
                if (data.LongLength != need)
                    throw new ArgumentException($"{path}: tensor '{name}': {data.LongLength} bytes of data but shape [{string.Join(", ", shape)}] of {dtype} needs {need}");
                s.Write(data);
            }));
        }
        WriteAtomic(path, entries, metadata);
    }

    /// <summary>Any supported dtype, each tensor's bytes written by its own callback (e.g. copied from another file in
    /// chunks, so a rewrite never holds the whole checkpoint); a callback must write exactly the shape's byte length.</summary>
    internal static void Write(string path, IReadOnlyList<(string Name, string DType, int[] Shape, Action<Stream> WriteData)> tensors,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var entries = new List<Entry>(tensors.Count);
        foreach (var (name, dtype, shape, write) in tensors)
            entries.Add(new Entry(name, ParseDType(name, dtype), shape, (s, _) => write(s)));
        WriteAtomic(path, entries, metadata);
    }

    /// <summary>A tensor to write; WriteData(stream, byteLength) writes exactly byteLength bytes.</summary>
    private sealed record Entry(string Name, StDType Kind, int[] Shape, Action<Stream, long> WriteData)
    {
        public long ByteLength
        {
            get
            {
                long n = Kind.Size();
                foreach (var s in Shape) n = checked(n * s);
                return n;
            }
        }
    }

    private static StDType ParseDType(string name, string dtype) =>
        SafetensorsDTypes.TryParse(dtype, out var k) ? k
            : throw new ArgumentException($"tensor '{name}': unknown dtype '{dtype}' (supported: {SafetensorsDTypes.Supported})");

    private static void WriteAtomic(string path, List<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        byte[] header = BuildHeader(entries, metadata);
        AtomicFile.Write(path, fs => WriteTo(fs, header, entries));
    }

    // u64 header length, the header, then each tensor's bytes in order
    private static void WriteTo(Stream fs, byte[] header, List<Entry> entries)
    {
        Span<byte> len8 = stackalloc byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len8, (ulong)header.Length);
        fs.Write(len8);
        fs.Write(header);
        foreach (var e in entries)
        {
            long before = fs.Position;
            e.WriteData(fs, e.ByteLength);
            if (fs.Position - before != e.ByteLength)
                throw new InvalidOperationException($"tensor '{e.Name}': wrote {fs.Position - before} bytes, header says {e.ByteLength}");
        }
    }

    private static byte[] BuildHeader(List<Entry> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var e in entries)
            {
                if (e.Name == "__metadata__" || !names.Add(e.Name))
                    throw new ArgumentException($"tensor name '{e.Name}' is reserved or appears twice");
                foreach (var s in e.Shape)
                    if (s < 0) throw new ArgumentException($"tensor '{e.Name}': negative dim in shape [{string.Join(", ", e.Shape)}]");
                w.WriteStartObject(e.Name);
                w.WriteString("dtype", e.Kind.ToString());
                w.WriteStartArray("shape");
                foreach (var s in e.Shape) w.WriteNumberValue(s);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset += e.ByteLength);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        int pad = (int)((8 - ms.Length % 8) % 8);
        for (int i = 0; i < pad; i++) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    private const int Block = 1 << 16;

    // t [shape] float32 or float64 data -> its bytes in dtype `kind`, converted block by block
    private static void WriteHost(Stream s, HostTensor t, StDType kind)
    {
        int n = checked((int)t.Length);
        if (kind == StDType.F32 && t.F32 is { } f32) { s.Write(MemoryMarshal.AsBytes(f32.AsSpan())); return; }
        if (kind == StDType.F64 && t.F64 is { } f64) { s.Write(MemoryMarshal.AsBytes(f64.AsSpan())); return; }
        byte[] buf = ArrayPool<byte>.Shared.Rent(Block * kind.Size());
        try
        {
            for (int i = 0; i < n; i += Block)
            {
                int m = Math.Min(Block, n - i);
                int bytes = m * kind.Size();
                ConvertBlock(t, i, m, kind, buf.AsSpan(0, bytes));
                s.Write(buf, 0, bytes);
            }
        }
        finally { ArrayPool<byte>.Shared.Return(buf); }
    }

    // elements [i, i+m) of t -> dst, m elements of kind
    private static void ConvertBlock(HostTensor t, int i, int m, StDType kind, Span<byte> dst)
    {
        if (t.F32 is { } f)
        {
            var src = f.AsSpan(i, m);
            switch (kind)
            {
                case StDType.F16: HalfConvert.F32ToF16(src, MemoryMarshal.Cast<byte, Half>(dst)); return;
                case StDType.BF16: HalfConvert.F32ToBF16(src, MemoryMarshal.Cast<byte, ushort>(dst)); return;
                case StDType.F64:
                {
                    var d = MemoryMarshal.Cast<byte, double>(dst);
                    for (int k = 0; k < m; k++) d[k] = src[k];
                    return;
                }
            }
        }
        else
        {
            var src = t.F64!.AsSpan(i, m);
            switch (kind)
            {
                case StDType.F32:
                {
                    var d = MemoryMarshal.Cast<byte, float>(dst);
                    for (int k = 0; k < m; k++) d[k] = (float)src[k];
                    return;
                }
                case StDType.F16:
                {
                    var d = MemoryMarshal.Cast<byte, Half>(dst);
                    for (int k = 0; k < m; k++) d[k] = HalfConvert.F64ToF16(src[k]);
                    return;
                }
                case StDType.BF16:
                {
                    var d = MemoryMarshal.Cast<byte, ushort>(dst);
                    for (int k = 0; k < m; k++) d[k] = HalfConvert.F64ToBF16(src[k]);
                    return;
                }
            }
        }
        throw new InvalidOperationException($"no conversion to {kind}");
    }
}
