using System.IO.MemoryMappedFiles;
using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>
/// A read-only, memory-mapped safetensors file. The header is validated at <see cref="Open"/>;
/// tensor bytes are only touched when a tensor is read, so a multi-GB checkpoint is never
/// copied whole. Reads are thread-safe (they only read the mapping).
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>Elements converted per step, so that byte spans stay well under 2 GB even for huge tensors.</summary>
    private const int Chunk = 1 << 24;

    private readonly SafetensorsHeader _header;
    private readonly MemoryMappedFile _map;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _data; // start of the data section; null once disposed

    private SafetensorsFile(string path, SafetensorsHeader header, MemoryMappedFile map, MemoryMappedViewAccessor view)
    {
        Path = path;
        _header = header;
        _map = map;
        _view = view;
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        _data = p + view.PointerOffset + header.DataStart;
    }

    public string Path { get; }
    public IReadOnlyDictionary<string, SafetensorInfo> Tensors => _header.Tensors;
    /// <summary>The header's `__metadata__` entry (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata => _header.Metadata;

    public static SafetensorsFile Open(string path)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors data is little-endian; this host is not");
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: file not found");
        // FileShare.Delete: an atomic writer may replace the file while it is mapped (the mapping keeps the old bytes).
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
        MemoryMappedFile? map = null;
        try
        {
            var header = SafetensorsHeader.Read(fs, path);
            map = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.Read, HandleInheritability.None, leaveOpen: false);
            var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
            return new SafetensorsFile(path, header, map, view);
        }
        catch
        {
            if (map is not null) map.Dispose(); else fs.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _header.Tensors.ContainsKey(name);

    public SafetensorInfo Info(string name) =>
        _header.Tensors.TryGetValue(name, out var i) ? i
            : throw new ModelFormatException($"{Path}: tensor '{SafetensorsHeader.Q(name)}' not found");

    /// <summary>A float tensor (F64 rounds; F32/F16/BF16 exact) into dst [numel].</summary>
    public void ReadF32(string name, Span<float> dst) => Decode(name, dst, true, SafetensorsDTypes.DecodeF32);

    public float[] ReadF32(string name)
    {
        var dst = new float[Count(name, true)];
        ReadF32(name, dst);
        return dst;
    }

    /// <summary>A float tensor, widened exactly to f64.</summary>
    public double[] ReadF64(string name)
    {
        var dst = new double[Count(name, true)];
        Decode<double>(name, dst, true, SafetensorsDTypes.DecodeF64);
        return dst;
    }

    /// <summary>An integer or BOOL tensor, widened to i64.</summary>
    public long[] ReadI64(string name)
    {
        var dst = new long[Count(name, false)];
        Decode<long>(name, dst, false, SafetensorsDTypes.DecodeI64);
        return dst;
    }

    /// <summary>F64 tensors as float64 data, F32/F16/BF16 as float32 data, all exact.</summary>
    public HostTensor ReadHost(string name)
    {
        var info = Info(name);
        return _header.Kinds[name] == StDType.F64
            ? new HostTensor((int[])info.Shape.Clone(), ReadF64(name))
            : new HostTensor((int[])info.Shape.Clone(), ReadF32(name));
    }

    private delegate void Decoder<T>(StDType t, ReadOnlySpan<byte> src, Span<T> dst);

    private int Count(string name, bool wantFloat)
    {
        var info = Info(name);
        CheckKind(info, wantFloat);
        long n = info.ElementCount;
        if (n > Array.MaxLength)
            throw new ModelFormatException($"{Path}: tensor '{SafetensorsHeader.Q(name)}' has {n} elements, more than one array can hold");
        return (int)n;
    }

    private void CheckKind(SafetensorInfo info, bool wantFloat)
    {
        if (_header.Kinds[info.Name].IsFloat() != wantFloat)
            throw new ModelFormatException(
                $"{Path}: tensor '{SafetensorsHeader.Q(info.Name)}' has dtype {info.DType}, expected {(wantFloat ? "a float dtype (F64, F32, F16, BF16)" : "an integer dtype (I64, I32, I16, I8, U8, BOOL)")}");
    }

    private void Decode<T>(string name, Span<T> dst, bool wantFloat, Decoder<T> decode)
    {
        var info = Info(name);
        CheckKind(info, wantFloat);
        if (dst.Length != info.ElementCount)
            throw new ArgumentException($"{Path}: tensor '{name}' {info.ShapeString} has {info.ElementCount} elements, destination holds {dst.Length}");
        var kind = _header.Kinds[name];
        int size = kind.Size();
        byte* p = _data;
        ObjectDisposedException.ThrowIf(p == null, this);
        for (int i = 0; i < dst.Length; i += Chunk)
        {
            int m = Math.Min(Chunk, dst.Length - i);
            var src = new ReadOnlySpan<byte>(p + info.Begin + (long)i * size, m * size);
            decode(kind, src, dst.Slice(i, m));
        }
    }

    /// <summary>
    /// The mapped bytes of a 16-bit float tensor (F16 or BF16) and its dtype, for a backend that reads
    /// weights in place; valid until this file is disposed (the caller keeps it open for as long).
    /// Null when the tensor is stored in another dtype.
    /// </summary>
    internal (IntPtr Bits, DType Kind)? Mapped16(string name)
    {
        var info = Info(name);
        var kind = _header.Kinds[name];
        if (kind is not (StDType.F16 or StDType.BF16)) return null;
        byte* p = _data;
        ObjectDisposedException.ThrowIf(p == null, this);
        return ((IntPtr)(p + info.Begin), kind == StDType.F16 ? DType.F16 : DType.BF16);
    }

    public void Dispose()
    {
        if (_data == null) return;
        _data = null;
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _map.Dispose();
    }
}
