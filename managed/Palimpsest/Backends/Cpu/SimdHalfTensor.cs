using System.Runtime.InteropServices;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// A 16-bit (bf16 or fp16) weight matrix of <see cref="SimdBackend"/>, canonical shape [R, C],
/// kept as the checkpoint stores it: usually the safetensors memory map itself (no copy; pages fault
/// in on first use), else an owned pinned array. <see cref="Transposed"/> records that the storage
/// is the transpose of the canonical matrix (Hugging Face's nn.Linear [out, in] against our
/// [in, out]); then element (i, j) is at bits[j·Ld + i], else at bits[i·Ld + j]. MatMul reads it
/// with the other transB flag, widening to float32 on the fly (<see cref="Gemm.SgemmHalf(bool,bool,int,int,int,ReadOnlySpan{float},int,ReadOnlySpan{ushort},int,DType,Span{float},int,bool)"/>).
///
/// Writing it (<see cref="SimdBackend.Upload"/>: an edit) promotes it to a float32 copy held beside
/// the 16-bit original — f·d·4 bytes for an edited WDown [f, d] — which every op then reads;
/// writing back exactly the original values (a revert) drops the copy again.
/// </summary>
public sealed unsafe class SimdHalfTensor : Tensor
{
    private readonly ushort* _bits;
    private readonly int _storageLength;
    // keeps an owned storage array alive (null when the storage is a memory map the model keeps open)
    private readonly object? _owner;

    private SimdHalfTensor(int[] shape, DType kind, ushort* bits, int storageLength, int ld, bool transposed, object? owner) : base(shape, kind)
    {
        if (kind is not (DType.BF16 or DType.F16)) throw new ArgumentException($"a 16-bit weight is BF16 or F16, not {kind}");
        if (shape.Length != 2) throw new ArgumentException($"a 16-bit weight is a matrix; shape {ShapeString} is not 2-D");
        int rows = transposed ? shape[1] : shape[0], cols = transposed ? shape[0] : shape[1];
        long need = rows == 0 || cols == 0 ? 0 : (long)(rows - 1) * ld + cols;
        if (ld < cols || storageLength < need)
            throw new ArgumentException($"16-bit weight {kind}{ShapeString}{(transposed ? " stored transposed" : "")}: storage of {storageLength} values with row stride {ld} is too short (needs {need})");
        _bits = bits; _storageLength = storageLength; Ld = ld; Transposed = transposed; _owner = owner;
    }

    /// <summary>
    /// A view over 16-bit storage that something else keeps alive (a memory map): [rows, cols] with
    /// row stride <paramref name="ld"/>, or its transpose when <paramref name="transposed"/>.
    /// </summary>
    internal static SimdHalfTensor Over(ushort* bits, long storageLength, int[] shape, DType kind, int ld, bool transposed, object? owner = null)
    {
        if (storageLength > int.MaxValue) throw new ArgumentException($"16-bit weight {kind}[{string.Join(", ", shape)}]: {storageLength} values do not fit one span");
        return new SimdHalfTensor(shape, kind, bits, (int)storageLength, ld, transposed, owner);
    }

    /// <summary>src [R, C] float32 rounded (to nearest even) into a new owned 16-bit matrix of <paramref name="kind"/>.</summary>
    public static SimdHalfTensor Round(ReadOnlySpan<float> src, int[] shape, DType kind)
    {
        var bits = GC.AllocateUninitializedArray<ushort>(src.Length, pinned: true);
        if (kind == DType.BF16) HalfConvert.F32ToBF16(src, bits);
        else HalfConvert.F32ToF16(src, MemoryMarshal.Cast<ushort, Half>(bits.AsSpan()));
        return Owned(bits, shape, kind, shape.Length == 2 ? shape[1] : 0, transposed: false);
    }

    /// <summary>A tensor over a pinned array it keeps alive.</summary>
    internal static SimdHalfTensor Owned(ushort[] pinnedBits, int[] shape, DType kind, int ld, bool transposed) =>
        new(shape, kind, (ushort*)Marshal.UnsafeAddrOfPinnedArrayElement(pinnedBits, 0), pinnedBits.Length, ld, transposed, pinnedBits);

    /// <summary>The storage format: <see cref="DType.BF16"/> or <see cref="DType.F16"/> (the same as <see cref="Tensor.DType"/>).</summary>
    public DType Kind => DType;

    /// <summary>Whether the storage is something else's (a memory map), not an array of its own.</summary>
    internal bool InPlace => _owner is null;

    /// <summary>Row stride of the storage, in elements.</summary>
    public int Ld { get; }

    /// <summary>True when the storage is the canonical matrix's transpose ([C, R]).</summary>
    public bool Transposed { get; }

    /// <summary>The 16-bit storage (the original, also after promotion).</summary>
    internal ReadOnlySpan<ushort> Bits => new(_bits, _storageLength);

    /// <summary>The first stored element (that of canonical (0, 0)); views of one checkpoint tensor compare by it.</summary>
    internal ushort* Start => _bits;

    /// <summary>The float32 copy [R, C] an edit wrote (null while the weight is its 16-bit original).</summary>
    public float[]? Promoted { get; private set; }

    /// <summary>Bytes held beside the 16-bit original (the float32 copy of an edited weight).</summary>
    public long ExtraBytes => Promoted is null ? 0 : Promoted.LongLength * sizeof(float);

    /// <summary>The transposed matrix [C, R] over the same storage (no copy).</summary>
    internal SimdHalfTensor TransposeView() => new([Shape[1], Shape[0]], Kind, _bits, _storageLength, Ld, !Transposed, _owner);

    /// <summary>Canonical columns [start, start + n) as [R, n] over the same storage (no copy).</summary>
    internal SimdHalfTensor ColumnsView(int start, int n)
    {
        if (start < 0 || n < 0 || start + n > Cols) throw new ArgumentOutOfRangeException(nameof(start), $"columns [{start}, {start + n}) of {this}");
        // canonical columns are storage columns (offset start) or storage rows (offset start·Ld)
        long offset = Transposed ? (long)start * Ld : start;
        return new([Rows, n], Kind, _bits + offset, (int)(_storageLength - offset), Ld, Transposed, _owner);
    }

    /// <summary>The bits of canonical element (i, j).</summary>
    private ushort BitsAt(int i, int j) => _bits[Transposed ? (long)j * Ld + i : (long)i * Ld + j];

    /// <summary>Canonical rows idx as a new owned [idx.Length, C] matrix (GPT-NeoX's per-head q|k|v split: a copy, still 16-bit).</summary>
    internal SimdHalfTensor GatherRows(int[] idx)
    {
        int c = Cols;
        var bits = GC.AllocateUninitializedArray<ushort>(idx.Length * c, pinned: true);
        for (int r = 0; r < idx.Length; r++)
        {
            if ((uint)idx[r] >= (uint)Rows) throw new ArgumentOutOfRangeException(nameof(idx), $"row {idx[r]} of {this}");
            for (int j = 0; j < c; j++) bits[r * c + j] = BitsAt(idx[r], j);
        }
        return Owned(bits, [idx.Length, c], Kind, c, transposed: false);
    }

    /// <summary>dst [C] = canonical row i as float32 (the float32 copy when promoted).</summary>
    internal void ReadRow(int i, Span<float> dst)
    {
        int c = Cols;
        if (dst.Length != c) throw new ArgumentException($"row of {this} has {c} values, destination {dst.Length}");
        if (Promoted is not null) { Promoted.AsSpan(i * c, c).CopyTo(dst); return; }
        if (Transposed) { for (int j = 0; j < c; j++) dst[j] = HalfWiden.Scalar(Kind, BitsAt(i, j)); return; }
        var row = new ReadOnlySpan<ushort>(_bits + (long)i * Ld, c);
        if (Kind == DType.BF16) HalfConvert.BF16ToF32(row, dst);
        else HalfConvert.F16ToF32(row, dst);
    }

    /// <summary>dst [R, C] = the weight as float32 values converted to T (the float32 copy when promoted).</summary>
    internal void CopyTo<T>(Span<T> dst) where T : unmanaged, System.Numerics.INumberBase<T>
    {
        if (dst.Length != Length) throw new ArgumentException($"ToHost: destination holds {dst.Length} values, tensor {this} has {Length}");
        if (Promoted is not null) { for (int i = 0; i < Promoted.Length; i++) dst[i] = T.CreateTruncating(Promoted[i]); return; }
        fixed (T* p = dst)
        {
            var copy = new Copy<T> { Dst = p, Kind = Kind };
            Visit(ref copy);
        }
    }

    /// <summary>
    /// Overwrites the weight with src [R, C] (float32 values): promotes it to a float32 copy, or, when
    /// src is exactly the 16-bit original, drops the copy (the weight is its original again).
    /// </summary>
    internal void Write(ReadOnlySpan<double> src)
    {
        if (src.Length != Length) throw new ArgumentException($"Upload: {src.Length} values, tensor {this} has {Length}");
        fixed (double* p = src)
        {
            var same = new SameAs { Src = p, Kind = Kind };
            if (Visit(ref same)) { Promoted = null; return; }
        }
        var f = Promoted ?? new float[Length];
        for (int i = 0; i < f.Length; i++) f[i] = (float)src[i];
        Promoted = f;
    }

    /// <summary>What <see cref="Visit"/> does with canonical element (flat index i·C + j) stored as bits; false stops.</summary>
    private interface IElementVisitor { bool At(long index, ushort bits); }

    /// <summary>
    /// Calls v.At on every element in an order that reads the storage in streams: row by row, or, when
    /// stored [C, R], 16 storage rows (canonical columns) at a time so that a canonical row gets 16
    /// adjacent values per visit. True when no call returned false.
    /// </summary>
    private bool Visit<TV>(ref TV v) where TV : struct, IElementVisitor
    {
        int r = Rows, c = Cols;
        if (!Transposed)
        {
            for (int i = 0; i < r; i++)
            {
                ushort* row = _bits + (long)i * Ld;
                for (int j = 0; j < c; j++) if (!v.At((long)i * c + j, row[j])) return false;
            }
            return true;
        }
        for (int j0 = 0; j0 < c; j0 += 16)
        {
            int jn = Math.Min(16, c - j0);
            for (int i = 0; i < r; i++)
                for (int jj = 0; jj < jn; jj++)
                    if (!v.At((long)i * c + j0 + jj, _bits[(long)(j0 + jj) * Ld + i])) return false;
        }
        return true;
    }

    private struct Copy<T> : IElementVisitor where T : unmanaged, System.Numerics.INumberBase<T>
    {
        public T* Dst; public DType Kind;
        public bool At(long index, ushort bits) { Dst[index] = T.CreateTruncating(HalfWiden.Scalar(Kind, bits)); return true; }
    }

    // every src value rounds to the stored one (a revert to the original)
    private struct SameAs : IElementVisitor
    {
        public double* Src; public DType Kind;
        public bool At(long index, ushort bits) => (float)Src[index] == HalfWiden.Scalar(Kind, bits) && !double.IsNaN(Src[index]);
    }
}
