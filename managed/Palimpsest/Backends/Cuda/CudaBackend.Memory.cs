using Palimpsest.Cuda.Interop;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

// Allocation, host <-> device copies, weight storage conversion.
public sealed partial class CudaBackend
{
    // The memset is deferred to the tensor's first use and skipped when that use overwrites it
    // whole (see CudaTensor.OverwritePtr): a decode step allocates ~15 temporaries per layer.
    public Tensor Zeros(params int[] shape)
    {
        var t = New(DType.F32, shape);
        Zero(t);
        return t;
    }

    public Tensor FromHost(ReadOnlySpan<double> src, params int[] shape) => FromHost(ToFloat(src), shape);

    public Tensor FromHost(ReadOnlySpan<float> src, params int[] shape)
    {
        var t = New(DType.F32, shape);
        if (src.Length != t.Length) { t.Dispose(); throw new ArgumentException($"{src.Length} values for shape {t.ShapeString}"); }
        UploadTo(t.Ptr, src);
        return t;
    }

    /// <summary>Matrices (rank 2, both dimensions > 1) take the backend's weight storage; vectors stay float32.</summary>
    private DType StorageFor(int[] shape) =>
        shape.Length == 2 && shape[0] > 1 && shape[1] > 1 ? WeightStorage : DType.F32;

    public Tensor Weight(ReadOnlySpan<float> src, params int[] shape)
    {
        var dtype = StorageFor(shape);
        if (dtype == DType.F32) return FromHost(src, shape);
        using var wide = (CudaTensor)FromHost(src, shape);
        var t = New(dtype, shape);
        Narrow(wide, t);
        return t;
    }

    public Tensor Weight(ReadOnlySpan<double> src, params int[] shape) => Weight(ToFloat(src), shape);

    /// <summary>
    /// Overwrites <paramref name="t"/> (any storage type) with offset + uniform [-scale, scale)
    /// noise drawn on the device from <paramref name="seed"/>: benchmarks make gigabytes of random
    /// weights this way instead of uploading them.
    /// </summary>
    public void FillUniform(Tensor t, ulong seed, float scale, float offset = 0f)
    {
        var c = C(t, "t");
        c.Touch();
        _k.Elementwise.fill_uniform(PerElement(c.Length), c.OverwritePtr, DTypeCode(c.DType), c.Length, seed, scale, offset);
    }

    // src float32 -> dst float16/bfloat16, same length
    private void Narrow(CudaTensor src, CudaTensor dst)
    {
        dst.Touch();
        _k.Elementwise.f32_to_narrow(dst.DType, PerElement(dst.Length), src.Ptr, dst.OverwritePtr, dst.Length);
    }

    public void ToHost(Tensor t, Span<double> dst)
    {
        if (dst.Length != t.Length) throw new ArgumentException($"{dst.Length} values for {t}");
        var tmp = new float[t.Length];
        ToHost(t, tmp);
        for (int i = 0; i < tmp.Length; i++) dst[i] = tmp[i];
    }

    public void ToHost(Tensor t, Span<float> dst)
    {
        if (dst.Length != t.Length) throw new ArgumentException($"{dst.Length} values for {t}");
        using var w = Widen(t, "t");
        Download(w.Ptr, dst);
    }

    public void Upload(Tensor t, ReadOnlySpan<double> src)
    {
        var c = C(t, "t");
        if (src.Length != c.Length) throw new ArgumentException($"{src.Length} values for {c}");
        c.Touch();
        var f = ToFloat(src);
        if (c.DType == DType.F32) { UploadTo(c.OverwritePtr, (ReadOnlySpan<float>)f); return; }
        using var wide = (CudaTensor)FromHost(f, c.Shape);
        Narrow(wide, c);
    }

    public void Zero(Tensor t)
    {
        var c = C(t, "t");
        c.Touch();
        if (c.IsView || _capture is not null) MemsetZero(c); // inside a capture: an explicit zero is part of every replay
        else c.DeferZero(_memsetZero);
    }

    // A deferred fill settled by the tensor's first use. A tensor zeroed before a capture and
    // first used inside it would get its fill recorded into the graph, to be redone at every
    // replay (wiping, say, a KV cache): refused.
    private void SettleZero(CudaTensor c)
    {
        if (_capture is not null && !_capture.Created.Contains(c))
            throw new InvalidOperationException($"{c} came from Zeros before the graph capture and is first used inside it: use it once before capturing");
        MemsetZero(c);
    }

    // the zero-fill itself (views: the whole view; their parent's pending fill is settled first by RawPtr)
    private void MemsetZero(CudaTensor c)
    {
        Bind();
        if (c.Bytes > 0) CuDriver.Check(CuDriver.cuMemsetD8Async(c.RawPtr, 0, (nuint)c.Bytes, Stream), $"cuMemsetD8Async({c.Bytes} bytes)");
    }

    /// <summary>A float32 output that the op writes whole without reading it (drops a pending zero-fill).</summary>
    private static ulong Out(Tensor t, string what) => F(t, what).OverwritePtr;

    // t [R, C] -> view [rows, C] over its first rows (shares storage; disposing the view frees nothing)
    public Tensor RowPrefix(Tensor t, int rows)
    {
        var c = C(t, "t");
        if (rows < 0 || rows > c.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"RowPrefix: {rows} rows of {c}");
        return new CudaTensor(c, [rows, c.Cols]);
    }

    // src [*, d] rows srcRow.. -> dst [*, d] rows dstRow..
    public void CopyRows(Tensor src, int srcRow, Tensor dst, int dstRow, int rows)
    {
        var s = C(src, "src");
        var d = C(dst, "dst");
        if (s.DType != d.DType) throw new ArgumentException($"CopyRows: types differ ({s} vs {d})");
        OpShapes.CopyRows(s, srcRow, d, dstRow, rows);
        if (rows == 0 || s.Cols == 0) return;
        d.Touch();
        long rowBytes = (long)s.Cols * CudaTensor.ElementSize(s.DType);
        Bind();
        CuDriver.Check(CuDriver.cuMemcpyDtoDAsync_v2(d.Ptr + (ulong)(dstRow * rowBytes), s.Ptr + (ulong)(srcRow * rowBytes), (nuint)(rows * rowBytes), Stream),
            $"cuMemcpyDtoDAsync_v2({rows * rowBytes} bytes)");
    }

    private static float[] ToFloat(ReadOnlySpan<double> src)
    {
        var f = new float[src.Length];
        for (int i = 0; i < f.Length; i++) f[i] = (float)src[i];
        return f;
    }
}
