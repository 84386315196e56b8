using Palimpsest.Tensors;
namespace Palimpsest.Backends.Cuda;

// Launchers for kernels/norms.cu.
public sealed partial class CudaBackend
{
    // x [T, d], g [d], b [d]? -> y [T, d], mean [T], rstd [T]
    public void LayerNorm(Tensor x, Tensor g, Tensor? b, double eps, Tensor y, Tensor mean, Tensor rstd)
    {
        var cx = F(x, "x");
        int rows = cx.Rows, d = cx.Cols;
        CheckNorm(cx, g, y, mean, rstd, "LayerNorm");
        if (b is not null && b.Length != d) throw new ArgumentException($"LayerNorm: b {b} for x {cx}");
        using var wg = Widen(g, "g");
        using var wb = b is null ? default : Widen(b, "b");
        _k.Norms.layernorm_fwd(PerRow(rows), cx.Ptr, wg.Ptr, b is null ? 0UL : wb.Ptr, (float)eps,
            Out(y, "y"), Out(mean, "mean"), Out(rstd, "rstd"), d);
    }

    // dy, x [T, d], g [d], mean, rstd [T] -> dx [T, d] +=, dg [d] +=, db [d] += (dg/db optional)
    public void LayerNormBackward(Tensor dy, Tensor x, Tensor g, Tensor mean, Tensor rstd, Tensor dx, Tensor? dg, Tensor? db)
    {
        var cx = F(x, "x");
        int rows = cx.Rows, d = cx.Cols;
        CheckNorm(cx, g, dy, mean, rstd, "LayerNormBackward");
        SameLength(dx, x, "LayerNormBackward dx");
        using var wg = Widen(g, "g");
        _k.Norms.layernorm_bwd_dx(PerRow(rows), F(dy, "dy").Ptr, cx.Ptr, wg.Ptr, F(mean, "mean").Ptr, F(rstd, "rstd").Ptr, F(dx, "dx").Ptr, d);
        if (dg is null && db is null) return;
        if ((dg is not null && dg.Length != d) || (db is not null && db.Length != d)) throw new ArgumentException($"LayerNormBackward: dg/db for d {d}");
        _k.Norms.layernorm_bwd_dgdb(PerElement(d), F(dy, "dy").Ptr, cx.Ptr, F(mean, "mean").Ptr, F(rstd, "rstd").Ptr, Opt(dg, "dg"), Opt(db, "db"), rows, d);
    }

    // x [T, d], g [d] -> y [T, d], rstd [T]
    public void RmsNorm(Tensor x, Tensor g, double eps, Tensor y, Tensor rstd)
    {
        var cx = F(x, "x");
        CheckNorm(cx, g, y, rstd, rstd, "RmsNorm");
        using var wg = Widen(g, "g");
        _k.Norms.rmsnorm_fwd(PerRow(cx.Rows), cx.Ptr, wg.Ptr, (float)eps, Out(y, "y"), Out(rstd, "rstd"), cx.Cols);
    }

    // dy, x [T, d], g [d], rstd [T] -> dx [T, d] +=, dg [d] += (optional)
    public void RmsNormBackward(Tensor dy, Tensor x, Tensor g, Tensor rstd, Tensor dx, Tensor? dg)
    {
        var cx = F(x, "x");
        int rows = cx.Rows, d = cx.Cols;
        CheckNorm(cx, g, dy, rstd, rstd, "RmsNormBackward");
        SameLength(dx, x, "RmsNormBackward dx");
        using var wg = Widen(g, "g");
        _k.Norms.rmsnorm_bwd_dx(PerRow(rows), F(dy, "dy").Ptr, cx.Ptr, wg.Ptr, F(rstd, "rstd").Ptr, F(dx, "dx").Ptr, d);
        if (dg is null) return;
        if (dg.Length != d) throw new ArgumentException($"RmsNormBackward: dg {dg} for d {d}");
        _k.Norms.rmsnorm_bwd_dg(PerElement(d), F(dy, "dy").Ptr, cx.Ptr, F(rstd, "rstd").Ptr, F(dg, "dg").Ptr, rows, d);
    }

    private static void CheckNorm(CudaTensor x, Tensor g, Tensor y, Tensor stat1, Tensor stat2, string op)
    {
        if (g.Length != x.Cols || y.Length != x.Length || stat1.Length != x.Rows || stat2.Length != x.Rows)
            throw new ArgumentException($"{op}: x {x}, g {g}, y {y}, stats {stat1} {stat2}");
    }
}
