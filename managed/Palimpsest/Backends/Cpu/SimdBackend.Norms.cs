using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

public sealed partial class SimdBackend
{
    private static void CheckNorm(string op, Tensor x, Tensor y, Tensor g, Tensor? b, Tensor perRow, Tensor? perRow2 = null)
    {
        SameLength(x, y, op);
        if (g.Length != x.Cols) throw new ArgumentException($"{op}: gain {g} does not match {x}");
        if (b is not null && b.Length != x.Cols) throw new ArgumentException($"{op}: bias {b} does not match {x}");
        if (perRow.Length != x.Rows) throw new ArgumentException($"{op}: {perRow} is not [{x.Rows}]");
        if (perRow2 is not null && perRow2.Length != x.Rows) throw new ArgumentException($"{op}: {perRow2} is not [{x.Rows}]");
    }

    // x [T, d] -> y [T, d] = (x - mean) · rstd · g (+ b); mean, rstd [T]
    public void LayerNorm(Tensor x, Tensor g, Tensor? b, double eps, Tensor y, Tensor mean, Tensor rstd)
    {
        CheckNorm("LayerNorm", x, y, g, b, mean, rstd);
        int d = x.Cols;
        var X = F(x); var Y = F(y); ReadOnlySpan<float> G = S(g), B = b is null ? default : S(b);
        var M = F(mean); var R = F(rstd);
        for (int t = 0; t < x.Rows; t++)
        {
            var xr = X.AsSpan(t * d, d); var yr = Y.AsSpan(t * d, d);
            float mu = TensorPrimitives.Sum(xr) / d;
            // Centre first, then square: the two-pass variance does not cancel catastrophically.
            TensorPrimitives.Subtract(xr, mu, yr);
            float r = (float)(1.0 / Math.Sqrt(TensorPrimitives.SumOfSquares(yr) / d + eps));
            M[t] = mu; R[t] = r;
            TensorPrimitives.Multiply(yr, r, yr);
            if (b is null) TensorPrimitives.Multiply(yr, G, yr);
            else TensorPrimitives.MultiplyAdd(yr, G, B, yr);
        }
    }

    // dy, x [T, d]; dx [T, d] += ∂; dg, db [d] += ∂
    public void LayerNormBackward(Tensor dy, Tensor x, Tensor g, Tensor mean, Tensor rstd, Tensor dx, Tensor? dg, Tensor? db)
    {
        CheckNorm("LayerNormBackward", x, dy, g, null, mean, rstd);
        SameLength(x, dx, "LayerNormBackward");
        int d = x.Cols;
        var DY = F(dy); var X = F(x); ReadOnlySpan<float> G = S(g); var M = F(mean); var R = F(rstd); var DX = F(dx);
        var DG = dg is null ? default : S(dg); var DB = db is null ? default : S(db);
        var xhat = Grow(ref _rowA, d); var gh = Grow(ref _rowB, d);
        for (int t = 0; t < x.Rows; t++)
        {
            var dyr = DY.AsSpan(t * d, d); var dxr = DX.AsSpan(t * d, d);
            float r = R[t];
            TensorPrimitives.Subtract(X.AsSpan(t * d, d), M[t], xhat);
            TensorPrimitives.Multiply(xhat, r, xhat);
            TensorPrimitives.Multiply(dyr, G, gh);
            float sumG = TensorPrimitives.Sum(gh), sumGX = TensorPrimitives.Dot(gh, xhat);
            if (dg is not null) TensorPrimitives.MultiplyAdd(dyr, xhat, DG, DG);
            if (db is not null) TensorPrimitives.Add(DB, dyr, DB);
            // dx += r · (gh − Σgh/d − xhat · Σ(gh·xhat)/d)
            TensorPrimitives.Subtract(gh, sumG / d, gh);
            TensorPrimitives.MultiplyAdd(xhat, -sumGX / d, gh, gh);
            TensorPrimitives.MultiplyAdd(gh, r, dxr, dxr);
        }
    }

    // x [T, d] -> y [T, d] = x · rstd · g; rstd [T]
    public void RmsNorm(Tensor x, Tensor g, double eps, Tensor y, Tensor rstd)
    {
        CheckNorm("RmsNorm", x, y, g, null, rstd);
        int d = x.Cols;
        var X = F(x); var Y = F(y); ReadOnlySpan<float> G = S(g); var R = F(rstd);
        for (int t = 0; t < x.Rows; t++)
        {
            var xr = X.AsSpan(t * d, d); var yr = Y.AsSpan(t * d, d);
            float r = (float)(1.0 / Math.Sqrt(TensorPrimitives.SumOfSquares(xr) / d + eps));
            R[t] = r;
            TensorPrimitives.Multiply(xr, r, yr);
            TensorPrimitives.Multiply(yr, G, yr);
        }
    }

    // dy, x [T, d]; dx [T, d] += ∂; dg [d] += ∂
    public void RmsNormBackward(Tensor dy, Tensor x, Tensor g, Tensor rstd, Tensor dx, Tensor? dg)
    {
        CheckNorm("RmsNormBackward", x, dy, g, null, rstd);
        SameLength(x, dx, "RmsNormBackward");
        int d = x.Cols;
        var DY = F(dy); var X = F(x); ReadOnlySpan<float> G = S(g); var R = F(rstd); var DX = F(dx);
        var DG = dg is null ? default : S(dg);
        var gh = Grow(ref _rowA, d); var dyx = Grow(ref _rowB, d);
        for (int t = 0; t < x.Rows; t++)
        {
            var dyr = DY.AsSpan(t * d, d); var xr = X.AsSpan(t * d, d); var dxr = DX.AsSpan(t * d, d);
            float r = R[t];
            TensorPrimitives.Multiply(dyr, G, gh);
            float dot = TensorPrimitives.Dot(gh, xr);
            if (dg is not null)
            {
                // dg += dy · x · r
                TensorPrimitives.Multiply(dyr, xr, dyx);
                TensorPrimitives.MultiplyAdd(dyx, r, DG, DG);
            }
            // dx += r · gh − r³ · x · dot / d
            TensorPrimitives.MultiplyAdd(gh, r, dxr, dxr);
            TensorPrimitives.MultiplyAdd(xr, -r * r * r * dot / d, dxr, dxr);
        }
    }
}
