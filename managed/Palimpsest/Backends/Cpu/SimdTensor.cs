using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>A float32 tensor in host memory: the storage of <see cref="SimdBackend"/>.</summary>
public sealed class SimdTensor : Tensor
{
    public SimdTensor(float[] data, int[] shape) : base(shape, DType.F32)
    {
        if (data.LongLength != Length) throw new ArgumentException($"data length {data.LongLength} does not match shape {ShapeString}");
        Data = data;
    }

    public float[] Data { get; }

    /// <summary>Row r of the [Rows, Cols] view.</summary>
    public Span<float> Row(int r) => Data.AsSpan(r * Cols, Cols);
}
