using Palimpsest.Cuda.Interop;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

/// <summary>A tensor in device memory: float32 activations, or float32/float16/bfloat16 weights.</summary>
public sealed class CudaTensor : Tensor
{
    private DeviceBuffer? _buffer;

    internal CudaTensor(int[] shape, DType dtype, DeviceBuffer buffer) : base(shape, dtype)
    {
        _buffer = buffer;
    }

    /// <summary>Device address of element 0 (0 once disposed).</summary>
    public ulong Ptr => _buffer?.Ptr ?? throw new ObjectDisposedException(nameof(CudaTensor), $"{this} was disposed");

    public long Bytes => Length * ElementSize(DType);

    internal static int ElementSize(DType t) => t switch
    {
        DType.F64 => 8,
        DType.F32 => 4,
        _ => 2,
    };

    public override void Dispose()
    {
        _buffer?.Dispose();
        _buffer = null;
        base.Dispose();
    }
}
