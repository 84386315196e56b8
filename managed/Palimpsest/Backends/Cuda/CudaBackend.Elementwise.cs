using Palimpsest.Tensors;
namespace Palimpsest.Backends.Cuda;

// Launchers for kernels/elementwise.cu.
public sealed partial class CudaBackend
{
    // x [M, N] += bias [N]
    public void AddBias(Tensor x, Tensor bias)
    {
        var cx = F(x, "x");
        var cb = C(bias, "bias");
        if (cb.Length != cx.Cols) throw new ArgumentException($"AddBias: x {cx}, bias {cb}");
        _k.Elementwise.add_bias_f32(PerElement(cx.Length), cx.Ptr, cb.Ptr, DTypeCode(cb.DType), (long)cx.Rows, cx.Cols);
    }

    // x [M, N] -> dst [N] (+)= column sums
    public void SumRows(Tensor x, Tensor dst, bool accumulate)
    {
        var cx = F(x, "x");
        var cd = F(dst, "dst");
        if (cd.Length != cx.Cols) throw new ArgumentException($"SumRows: x {cx}, dst {cd}");
        _k.Elementwise.sum_rows_f32(PerElement(cx.Cols), cx.Ptr, cd.Ptr, cx.Rows, cx.Cols, accumulate ? 1 : 0);
    }

    // dst = a + b (same length; dst may alias a or b)
    public void Add(Tensor a, Tensor b, Tensor dst)
    {
        SameLength(a, b, "Add");
        SameLength(a, dst, "Add");
        using var wa = Widen(a, "a");
        using var wb = Widen(b, "b");
        _k.Elementwise.add_f32(PerElement(dst.Length), wa.Ptr, wb.Ptr, Out(dst, "dst"), dst.Length);
    }

    // dst += alpha * src
    public void Axpy(double alpha, Tensor src, Tensor dst)
    {
        SameLength(src, dst, "Axpy");
        using var ws = Widen(src, "src");
        _k.Elementwise.axpy_f32(PerElement(dst.Length), (float)alpha, ws.Ptr, F(dst, "dst").Ptr, dst.Length);
    }

    // x [T, d]: x[row, :] += v [d]
    public void AddToRow(Tensor x, int row, Tensor v)
    {
        var cx = F(x, "x");
        var cv = F(v, "v");
        if (cv.Length != cx.Cols || row < 0 || row >= cx.Rows) throw new ArgumentException($"AddToRow: x {cx}, row {row}, v {cv}");
        _k.Elementwise.add_to_row_f32(PerElement(cx.Cols), cx.Ptr, cv.Ptr, row, cx.Cols);
    }

    // dst [d] (+)= x [T, d] row
    public void GetRow(Tensor x, int row, Tensor dst, bool accumulate)
    {
        var cx = F(x, "x");
        var cd = F(dst, "dst");
        if (cd.Length != cx.Cols || row < 0 || row >= cx.Rows) throw new ArgumentException($"GetRow: x {cx}, row {row}, dst {cd}");
        _k.Elementwise.get_row_f32(PerElement(cx.Cols), cx.Ptr, cd.Ptr, row, cx.Cols, accumulate ? 1 : 0);
    }
}
