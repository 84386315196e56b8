using MathNet.Numerics.LinearAlgebra;
using MathNet.Numerics.LinearAlgebra.Factorization;

namespace Palimpsest.Analysis;

/// <summary>
/// Applies C⁻¹ for a key second moment C = E[k kᵀ] [f, f] (row-major, symmetric; see
/// Editing.KeyStatistics) by a float64 Cholesky factorisation, the solve ROME and the superposition
/// paper use. C is singular when the corpus had fewer tokens than f or some units never fire; then
/// (and when C is so ill-conditioned that the solve keeps no digits) a ridge λI is added, the
/// smallest of 1e-10, 1e-9, ... 1e-2 times the mean diagonal that factors cleanly, and
/// <see cref="Ridge"/>/<see cref="Note"/> say so: the whitened numbers then describe C + λI, not C.
/// </summary>
public sealed class InverseSecondMoment
{
    // Accept a factor whose smallest pivot² is at least this fraction of the largest: below it the
    // condition number is near 1/eps of float64 and C⁻¹k is rounding noise.
    private const double MinPivotRatio = 1e-14;

    private readonly Cholesky<double> _chol;

    /// <param name="c">C [f, f] row-major, symmetric.</param>
    public InverseSecondMoment(double[] c, int f)
    {
        if (f <= 0) throw new ArgumentOutOfRangeException(nameof(f), "dimension must be positive");
        if (c.Length != (long)f * f) throw new ArgumentException($"second moment has {c.Length} values, expected {f}x{f}");
        Dim = f;
        double scale = 0;
        for (int i = 0; i < f; i++) scale += c[(long)i * f + i];
        scale /= f;
        if (!(scale > 0) || !double.IsFinite(scale))
            throw new ArgumentException($"second moment has mean diagonal {scale}: no keys were seen (or they are not finite)");
        var m = Matrix<double>.Build.DenseOfRowMajor(f, f, c);
        if (TryFactor(m, out var chol)) { _chol = chol; return; }
        for (double rel = 1e-10; rel <= 1e-2 * 1.0001; rel *= 10)
        {
            var shifted = m + Matrix<double>.Build.DenseIdentity(f) * (rel * scale);
            if (!TryFactor(shifted, out chol)) continue;
            _chol = chol;
            Ridge = rel * scale;
            Note = $"C is singular or nearly so (Cholesky failed or lost every digit); added ridge {Ridge:G3} I = {rel:G1} × mean diagonal";
            return;
        }
        throw new ArgumentException($"second moment [{f}x{f}] could not be factored even with a ridge of 1e-2 × its mean diagonal");
    }

    /// <summary>f, the key dimension.</summary>
    public int Dim { get; }

    /// <summary>λ added to the diagonal before factoring; 0 when C factored as it is.</summary>
    public double Ridge { get; }

    /// <summary>Why a ridge was added; null when none was.</summary>
    public string? Note { get; }

    /// <summary>C⁻¹k [f] for a key k [f].</summary>
    public double[] Solve(ReadOnlySpan<double> k)
    {
        if (k.Length != Dim) throw new ArgumentException($"key of length {k.Length}, expected {Dim}");
        return _chol.Solve(Vector<double>.Build.DenseOfArray(k.ToArray())).ToArray();
    }

    /// <summary>Rows C⁻¹kᵢ [n, f] for keys as rows [n, f] (C is symmetric, so rows in, rows out).</summary>
    public double[] SolveRows(double[] keys, int n)
    {
        if (keys.Length != (long)n * Dim) throw new ArgumentException($"keys have {keys.Length} values, expected {n}x{Dim}");
        // Kᵀ [f, n] as columns: MathNet's column-major storage of [f, n] is exactly the row-major [n, f] array.
        var kt = Matrix<double>.Build.DenseOfColumnMajor(Dim, n, keys);
        var y = _chol.Solve(kt); // [f, n]
        return y.ToColumnMajorArray();
    }

    private static bool TryFactor(Matrix<double> m, out Cholesky<double> chol)
    {
        chol = null!;
        try { chol = m.Cholesky(); }
        catch (ArgumentException) { return false; } // MathNet: "Matrix must be positive definite"
        var l = chol.Factor;
        double lo = double.PositiveInfinity, hi = 0;
        for (int i = 0; i < l.RowCount; i++)
        {
            double p = l[i, i] * l[i, i];
            if (!double.IsFinite(p)) return false;
            lo = Math.Min(lo, p); hi = Math.Max(hi, p);
        }
        return lo >= MinPivotRatio * hi;
    }
}
