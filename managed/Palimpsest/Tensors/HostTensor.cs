namespace Palimpsest.Tensors;

/// <summary>
/// A tensor in host memory, float32 or float64 (float64 only where the checkpoint or an edit is
/// float64, so that nothing is rounded on the way to the reference backend).
/// </summary>
public sealed class HostTensor
{
    public HostTensor(int[] shape, float[] data) { Shape = shape; F32 = data; Check(data.Length); }
    public HostTensor(int[] shape, double[] data) { Shape = shape; F64 = data; Check(data.Length); }

    public int[] Shape { get; }
    public float[]? F32 { get; }
    public double[]? F64 { get; }
    public long Length => F32?.LongLength ?? F64!.LongLength;
    public string ShapeString => "[" + string.Join(", ", Shape) + "]";

    private void Check(long n)
    {
        long p = 1; foreach (var s in Shape) p *= s;
        if (p != n) throw new ArgumentException($"shape {ShapeString} needs {p} elements, got {n}");
    }

    /// <summary>Value i as float64.</summary>
    public double this[long i] => F32 is not null ? F32[i] : F64![i];

    public double[] ToDouble() => F64 is not null ? (double[])F64.Clone() : Array.ConvertAll(F32!, x => (double)x);
    public float[] ToFloat() => F32 is not null ? (float[])F32.Clone() : Array.ConvertAll(F64!, x => (float)x);
}
