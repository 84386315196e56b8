using System.Runtime.InteropServices;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Journal;

/// <summary>One tensor's stored bytes, copied verbatim so that unedited tensors keep every bit.</summary>
internal sealed record RawTensor(string Name, string DType, int[] Shape, byte[] Data);

/// <summary>
/// Whole-checkpoint byte-level reads and the float64 -> stored-dtype encoding of edited matrices.
/// ReadFile holds every tensor in memory (a new folder's copy); an edit's rewrite streams (<see cref="Rewrite"/>).
/// </summary>
internal static class RawCheckpoint
{
    /// <summary>The tensors of one safetensors file in data order, with its metadata.</summary>
    public static (List<RawTensor> Tensors, Dictionary<string, string> Metadata) ReadFile(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found");
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        var h = SafetensorsHeader.Read(fs, path);
        var list = new List<RawTensor>(h.Tensors.Count);
        foreach (var info in h.Tensors.Values.OrderBy(i => i.Begin))
        {
            if (info.ByteLength > Array.MaxLength)
                throw new ModelFormatException($"{path}: tensor '{info.Name}' is too large to rewrite ({info.ByteLength} bytes)");
            var data = new byte[info.ByteLength];
            fs.Position = h.DataStart + info.Begin;
            fs.ReadExactly(data);
            list.Add(new RawTensor(info.Name, info.DType, (int[])info.Shape.Clone(), data));
        }
        return (list, new Dictionary<string, string>(h.Metadata));
    }

    /// <summary>Name, dtype and shape of every tensor of a model folder (single file or shards), from the headers alone.</summary>
    public static List<(string Name, string DType, int[] Shape)> ListFolder(string dir)
    {
        var list = new List<(string, string, int[])>();
        foreach (var f in FolderFiles(dir))
        {
            using var fs = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            list.AddRange(SafetensorsHeader.Read(fs, f).Tensors.Values.OrderBy(i => i.Begin).Select(i => (i.Name, i.DType, (int[])i.Shape.Clone())));
        }
        return list;
    }

    /// <summary>
    /// Every tensor of a model folder (single file or shards, shard by shard, each in data order) written
    /// atomically as one file to target with metadata(the first file's metadata), copied in chunks of
    /// <see cref="CopyChunk"/> bytes: nothing is held in memory (an edited-model folder made from an
    /// 8B checkpoint used to read all 16 GB of it first).
    /// </summary>
    public static void MergeFolder(string dir, string target, Func<IReadOnlyDictionary<string, string>, IReadOnlyDictionary<string, string>> metadata)
    {
        var streams = new List<FileStream>();
        try
        {
            var entries = new List<(string, string, int[], Action<Stream>)>();
            IReadOnlyDictionary<string, string>? meta = null;
            foreach (var f in FolderFiles(dir))
            {
                var fs = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1);
                streams.Add(fs);
                var h = SafetensorsHeader.Read(fs, f);
                meta ??= h.Metadata;
                foreach (var info in h.Tensors.Values.OrderBy(i => i.Begin))
                    entries.Add((info.Name, info.DType, info.Shape, s => Copy(fs, h.DataStart + info.Begin, info.ByteLength, s, null)));
            }
            SafetensorsWriter.Write(target, entries, metadata(meta ?? new Dictionary<string, string>()));
        }
        finally { foreach (var s in streams) s.Dispose(); }
    }

    private static List<string> FolderFiles(string dir)
    {
        using var set = SafetensorsSet.OpenFolder(dir);
        return set.Files.Select(f => f.Path).ToList();
    }

    /// <summary>The header metadata of a safetensors file (header only; no tensor data is read).</summary>
    public static Dictionary<string, string> ReadMetadata(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        return new Dictionary<string, string>(SafetensorsHeader.Read(fs, path).Metadata);
    }

    // values [n] float64 -> n elements of dtype, each rounded once to nearest-even
    public static byte[] Encode(double[] values, string dtype)
    {
        switch (dtype)
        {
            case "F64": return MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
            case "F32":
            {
                var f = new float[values.Length];
                for (int i = 0; i < f.Length; i++) f[i] = (float)values[i];
                return MemoryMarshal.AsBytes(f.AsSpan()).ToArray();
            }
            case "F16":
            {
                var h = new Half[values.Length];
                for (int i = 0; i < h.Length; i++) h[i] = HalfConvert.F64ToF16(values[i]);
                return MemoryMarshal.AsBytes(h.AsSpan()).ToArray();
            }
            case "BF16":
            {
                var b = new ushort[values.Length];
                for (int i = 0; i < b.Length; i++) b[i] = HalfConvert.F64ToBF16(values[i]);
                return MemoryMarshal.AsBytes(b.AsSpan()).ToArray();
            }
            default: throw new ModelFormatException($"dtype {dtype} cannot hold edited weights (F64, F32, F16 or BF16 expected)");
        }
    }

    /// <summary>
    /// source's tensors, in its order, with the named ones replaced by values [n] (encoded in each tensor's own
    /// dtype), written atomically to target with metadata(source's metadata) (the header is read once). Unreplaced tensors are copied from source
    /// in chunks of <see cref="CopyChunk"/> bytes through one pooled buffer, so a rewrite holds no tensor in
    /// memory (an edit's commit used to read and allocate the whole checkpoint); between two chunks it calls
    /// between (a host holds the rewrite there while latency-critical work runs).
    /// </summary>
    public static void Rewrite(string source, string target, IReadOnlyDictionary<string, double[]> replaced,
        Func<IReadOnlyDictionary<string, string>, IReadOnlyDictionary<string, string>> metadata, Action? between = null)
    {
        if (!File.Exists(source)) throw new ModelFormatException($"{source}: file not found");
        using var fs = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1);
        var h = SafetensorsHeader.Read(fs, source);
        var entries = new List<(string, string, int[], Action<Stream>)>(h.Tensors.Count);
        foreach (var info in h.Tensors.Values.OrderBy(i => i.Begin))
        {
            if (replaced.TryGetValue(info.Name, out var w))
                entries.Add((info.Name, info.DType, info.Shape, s =>
                {
                    between?.Invoke();
                    s.Write(Encode(w, info.DType));
                }));
            else
                entries.Add((info.Name, info.DType, info.Shape, s => Copy(fs, h.DataStart + info.Begin, info.ByteLength, s, between)));
        }
        SafetensorsWriter.Write(target, entries, metadata(h.Metadata));
    }

    /// <summary>Bytes copied between two calls of Rewrite's between callback.</summary>
    public const int CopyChunk = 1 << 20;

    // length bytes of src from offset -> dst, a chunk at a time
    private static void Copy(FileStream src, long offset, long length, Stream dst, Action? between)
    {
        byte[] buf = System.Buffers.ArrayPool<byte>.Shared.Rent((int)Math.Min(CopyChunk, Math.Max(length, 1)));
        try
        {
            src.Position = offset;
            for (long done = 0; done < length;)
            {
                between?.Invoke();
                int n = (int)Math.Min(buf.Length, length - done);
                src.ReadExactly(buf, 0, n);
                dst.Write(buf, 0, n);
                done += n;
            }
        }
        finally { System.Buffers.ArrayPool<byte>.Shared.Return(buf); }
    }

    /// <summary>Writes tensors atomically (temp file, flush to disk, rename) through <see cref="SafetensorsWriter"/>.</summary>
    public static void Write(string path, IEnumerable<RawTensor> tensors, IReadOnlyDictionary<string, string> metadata) =>
        SafetensorsWriter.Write(path, tensors.Select(t => (t.Name, t.DType, t.Shape, t.Data)).ToList(), metadata);
}
