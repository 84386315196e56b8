using System.Runtime.InteropServices;
using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>
/// Named float64 arrays with their shapes, in order, plus string metadata, kept as one BLOB: the bytes
/// of a safetensors file (so a BLOB written out is a file any safetensors reader opens). What a
/// journal stores for an edit whose arrays it does not interpret (a LEMoE expert and router).
/// </summary>
/// <param name="Where">names the BLOB in errors ("DIR/edits.sqlite: edit 3's parts")</param>
public sealed record PartsBlob(IReadOnlyList<(string Name, int[] Shape, double[] Values)> Parts,
    IReadOnlyDictionary<string, string> Metadata, string Where = "parts")
{
    public byte[] ToBytes() =>
        SafetensorsWriter.ToBytes(Parts.Select(p => (p.Name, new HostTensor(p.Shape, p.Values), "F64")).ToList(), Metadata);

    /// <summary>The parts in the order they were written; every tensor must be F64.</summary>
    public static PartsBlob FromBytes(byte[] blob, string where)
    {
        using var ms = new MemoryStream(blob, writable: false);
        var h = SafetensorsHeader.Read(ms, where);
        var parts = new List<(string, int[], double[])>(h.Tensors.Count);
        foreach (var info in h.Tensors.Values.OrderBy(i => i.Begin))
        {
            if (info.DType != "F64") throw new ModelFormatException($"{where}: part '{info.Name}' is {info.DType}, expected F64");
            var bytes = blob.AsSpan(checked((int)(h.DataStart + info.Begin)), checked((int)info.ByteLength));
            parts.Add((info.Name, (int[])info.Shape.Clone(), MemoryMarshal.Cast<byte, double>(bytes).ToArray()));
        }
        return new PartsBlob(parts, new Dictionary<string, string>(h.Metadata), where);
    }

    /// <summary>The shape of part <paramref name="name"/>.</summary>
    public int[] ShapeOf(string name) => Find(name).Shape;

    /// <summary>Part <paramref name="name"/>'s values, which must be <paramref name="length"/> many.</summary>
    public double[] Read(string name, long length)
    {
        var v = Find(name).Values;
        if (v.LongLength != length) throw new ModelFormatException($"{Where}: part '{name}' has {v.LongLength} values, expected {length}");
        return v;
    }

    /// <summary>Metadata entry <paramref name="key"/> as an integer.</summary>
    public int Int(string key) =>
        Metadata.TryGetValue(key, out var s) && int.TryParse(s, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int v) ? v
            : throw new ModelFormatException($"{Where}: metadata '{key}' missing or not an integer");

    private (string Name, int[] Shape, double[] Values) Find(string name)
    {
        foreach (var p in Parts)
            if (p.Name == name) return p;
        throw new ModelFormatException($"{Where}: part '{name}' missing");
    }
}
