using Palimpsest.Cuda.Interop;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

/// <summary>A tensor in device memory: float32 activations, or float32/float16/bfloat16 weights.</summary>
public sealed class CudaTensor : Tensor
{
    private DeviceBuffer? _buffer;
    private readonly CudaTensor? _parent;
    private readonly Action<DeviceBuffer>? _release;

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

    /// <summary>Device address of element 0; throws once this tensor (or the one it views) is disposed.</summary>
    public ulong Ptr => _parent?.Ptr ?? _buffer?.Ptr ?? throw new ObjectDisposedException(nameof(CudaTensor), $"{this} was disposed");

    public long Bytes => Length * ElementSize(DType);

    internal static int ElementSize(DType t) => t switch
    {
        DType.F64 => 8,
        DType.F32 => 4,
        _ => 2,
    };

    public override void Dispose()
    {
        var b = _buffer;
        _buffer = null;
        if (b is not null)
        {
            if (_release is not null) _release(b);
            else b.Dispose();
        }
        base.Dispose();
    }
}
