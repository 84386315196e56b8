namespace Palimpsest.Tensors;

/// <summary>Element type of a tensor's storage.</summary>
public enum DType { F64, F32, F16, BF16 }

public static class DTypes
{
    /// <summary>Bytes of one element of type t.</summary>
    public static int Size(this DType t) => t switch
    {
        DType.F64 => 8,
        DType.F32 => 4,
        _ => 2,
    };
}

/// <summary>
/// A dense, row-major, contiguous tensor owned by one backend. The engine never indexes a
/// tensor directly: it asks the backend that made it (<see cref="Palimpsest.Backends.IBackend"/>).
/// Shapes are stated at every call site as in llm.c: <c>x [T, d]</c>.
/// </summary>
public abstract class Tensor : IDisposable
{
    protected Tensor(int[] shape, DType dtype)
    {
        Shape = shape;
        DType = dtype;
        long n = 1;
        foreach (var s in shape)
        {
            if (s < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape)}]");
            n *= s;
        }
        Length = n;
    }

    public int[] Shape { get; }
    public DType DType { get; }
    public long Length { get; }
    public int Rank => Shape.Length;

    /// <summary>Rows of a 2-D view: the product of all but the last dimension.</summary>
    public int Rows => Shape.Length == 0 ? 1 : (int)(Length / Math.Max(1, Shape[^1]));
    /// <summary>Last dimension.</summary>
    public int Cols => Shape.Length == 0 ? 1 : Shape[^1];

    public string ShapeString => "[" + string.Join(", ", Shape) + "]";

    public virtual void Dispose() { GC.SuppressFinalize(this); }

    public override string ToString() => $"{DType}{ShapeString}";
}
