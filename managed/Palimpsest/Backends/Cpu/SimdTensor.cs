using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// A float32 tensor in host memory: the storage of <see cref="SimdBackend"/>. <see cref="Data"/> may
/// be longer than the tensor when it is a row-prefix view (<see cref="SimdBackend.RowPrefix"/>) of a
/// larger one: the tensor is always the first <see cref="Tensor.Length"/> elements.
/// </summary>
public sealed class SimdTensor : Tensor
{
    private readonly float[] _data;
    private readonly bool _isView;

    public SimdTensor(float[] data, int[] shape) : base(shape, DType.F32)
    {
        if (data.LongLength != Length) throw new ArgumentException($"data length {data.LongLength} does not match shape {ShapeString}");
        _data = data;
        Pack = new PackState();
    }

    private SimdTensor(float[] data, int[] shape, PackState pack) : base(shape, DType.F32)
    {
        if (data.LongLength < Length) throw new ArgumentException($"storage of {data.LongLength} values is too short for shape {ShapeString}");
        _data = data;
        Pack = pack;
        _isView = true;
    }

    /// <summary>A tensor of <paramref name="shape"/> over the start of <paramref name="parent"/>'s storage (shared, not copied).</summary>
    internal static SimdTensor View(SimdTensor parent, int[] shape) => new(parent.Data, shape, parent.Pack);

    /// <summary>A tensor of <paramref name="shape"/> over the start of <paramref name="storage"/> that no other tensor packs.</summary>
    internal static SimdTensor View(float[] storage, int[] shape) => new(storage, shape, new PackState());

    /// <summary>
    /// The storage; the tensor is its first <see cref="Tensor.Length"/> elements. Getting it marks
    /// the backend's packed copy of a weight stale (it is made again before the next prefill that
    /// reads the weight), so write through an array got again after the last product, as
    /// <see cref="Training.AdamW"/> does each step, not through one kept from before it.
    /// </summary>
    public float[] Data
    {
        get
        {
            Pack.MarkStale();
            return _data;
        }
    }

    /// <summary>The tensor's elements (exactly <see cref="Tensor.Length"/> of them); as <see cref="Data"/>, marks a packed copy stale.</summary>
    public Span<float> Span => Data.AsSpan(0, checked((int)Length));

    /// <summary>The storage for reading only: leaves a packed copy as it is. Only the backend's products and embedding lookups use it.</summary>
    internal float[] Storage => _data;

    /// <summary>The state of the packed copy of this storage (shared with row-prefix views).</summary>
    internal PackState Pack { get; }

    /// <summary>Whether the backend made it as a weight (<see cref="SimdBackend.Weight(ReadOnlySpan{float}, int[])"/>): only weights get packed copies.</summary>
    internal bool IsWeight { get; init; }

    /// <summary>Marks a packed copy stale after a write through storage got earlier.</summary>
    internal void MarkWritten() => Pack.MarkStale();

    public override void Dispose()
    {
        if (!_isView) Pack.Release();
        base.Dispose();
    }
}
