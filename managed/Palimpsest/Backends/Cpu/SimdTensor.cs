using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// A float32 tensor in host memory: the storage of <see cref="SimdBackend"/>. <see cref="Data"/> may
/// be longer than the tensor when it is a row-prefix view (<see cref="SimdBackend.RowPrefix"/>) of a
/// larger one: the tensor is always the first <see cref="Tensor.Length"/> elements.
/// </summary>
public sealed class SimdTensor : Tensor
{
    public SimdTensor(float[] data, int[] shape) : base(shape, DType.F32)
    {
        if (data.LongLength != Length) throw new ArgumentException($"data length {data.LongLength} does not match shape {ShapeString}");
        Data = data;
    }

    private SimdTensor(float[] data, int[] shape, bool view) : base(shape, DType.F32)
    {
        if (data.LongLength < Length) throw new ArgumentException($"storage of {data.LongLength} values is too short for shape {ShapeString}");
        Data = data;
    }

    /// <summary>A tensor of <paramref name="shape"/> over the start of <paramref name="storage"/> (shared, not copied).</summary>
    internal static SimdTensor View(float[] storage, int[] shape) => new(storage, shape, view: true);

    /// <summary>The storage; the tensor is its first <see cref="Tensor.Length"/> elements.</summary>
    public float[] Data { get; }

    /// <summary>The tensor's elements (exactly <see cref="Tensor.Length"/> of them).</summary>
    public Span<float> Span => Data.AsSpan(0, checked((int)Length));
}
