using Palimpsest.Cuda.Interop;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

/// <summary>A tensor in device memory: float32 activations, or float32/float16/bfloat16 weights.</summary>
public sealed class CudaTensor : Tensor
{
    private DeviceBuffer? _buffer;
    private readonly CudaTensor? _parent;
    private readonly Action<DeviceBuffer>? _release;
    // A zero-fill owed by Zeros/Zero, done on first use of the address: most tensors from Zeros are
    // outputs that the next op overwrites whole, and those ops take OverwritePtr, which drops the
    // debt instead of queueing a memset (one driver call saved per temporary). Any other read of
    // Ptr (an input, an accumulating output, a download, a view) pays it first, in stream order.
    private Action<CudaTensor>? _pendingZero;

    /// <param name="release">Takes the buffer back on dispose (the backend's buffer cache); null: free it.</param>
    internal CudaTensor(int[] shape, DType dtype, DeviceBuffer buffer, Action<DeviceBuffer>? release = null) : base(shape, dtype)
    {
        _buffer = buffer;
        _release = release;
    }

    /// <summary>A view over the start of <paramref name="parent"/>'s storage (no copy, does not own it).</summary>
    internal CudaTensor(CudaTensor parent, int[] shape) : base(shape, parent.DType)
    {
        if (Length > parent.Length) throw new ArgumentException($"view {ShapeString} is larger than {parent}");
        _parent = parent;
    }

    /// <summary>Device address of element 0 (its contents current); throws once this tensor (or the one it views) is disposed.</summary>
    public ulong Ptr
    {
        get
        {
            if (_pendingZero is { } zero) { _pendingZero = null; zero(this); }
            return RawPtr;
        }
    }

    /// <summary>The address without settling a pending zero-fill (for the fill itself).</summary>
    internal ulong RawPtr => _parent?.Ptr ?? _buffer?.Ptr ?? throw new ObjectDisposedException(nameof(CudaTensor), $"{this} was disposed");

    /// <summary>
    /// The address for an op that writes every element without reading any: a pending zero-fill
    /// is dropped. Views settle their parent's fill (they cover only part of it).
    /// </summary>
    internal ulong OverwritePtr
    {
        get
        {
            if (_parent is null) _pendingZero = null;
            return Ptr;
        }
    }

    /// <summary>Owes a zero-fill, done by <paramref name="fill"/> at the first use of <see cref="Ptr"/>.</summary>
    internal void DeferZero(Action<CudaTensor> fill)
    {
        if (_parent is not null) throw new InvalidOperationException("a view cannot defer a zero-fill");
        _pendingZero = fill;
    }

    internal bool IsView => _parent is not null;

    /// <summary>
    /// Counts the writes to this tensor's storage (through it or a view of it) by the ops that can
    /// write a narrow tensor: Upload, CopyRows, Zero, FillUniform and narrowing. A derived copy
    /// (<see cref="Twin"/>) records the version it was made from.
    /// </summary>
    internal long Version { get; private set; }

    internal void Touch()
    {
        Version++;
        _parent?.Touch();
    }

    /// <summary>The weight transposed ([cols, rows]) for one-row products, made at <see cref="TwinVersion"/>; owned.</summary>
    internal CudaTensor? Twin { get; set; }
    internal long TwinVersion { get; set; }

    public long Bytes => Length * ElementSize(DType);

    internal static int ElementSize(DType t) => t.Size();

    public override void Dispose()
    {
        Twin?.Dispose();
        Twin = null;
        var b = _buffer;
        _buffer = null;
        _pendingZero = null;
        if (b is not null)
        {
            if (_release is not null) _release(b);
            else b.Dispose();
        }
        base.Dispose();
    }
}
