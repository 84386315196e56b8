namespace Palimpsest.Analysis;

/// <summary>
/// The pairwise key matrices of "Knowledge in Superposition" (Hu et al. 2024) for n keys, each
/// [n, n] row-major:
///   P[i, j] = kᵢᵀC⁻¹kⱼ / kᵢᵀC⁻¹kᵢ  — how much a ROME edit of fact i moves fact j's output (in
///             units of the edit's own δ); asymmetric, unit diagonal
///   Q[i, j] = kᵢ · kⱼ              — the raw inner products
///   WhitenedCosine[i, j] = kᵢᵀC⁻¹kⱼ / √(kᵢᵀC⁻¹kᵢ · kⱼᵀC⁻¹kⱼ)  — the cosine after whitening by C^(−1/2)
///   RawCosine[i, j] = kᵢ · kⱼ / (|kᵢ| |kⱼ|)
/// Ridge is what <see cref="InverseSecondMoment"/> added to C (0: none) and Note says why.
/// </summary>
public sealed record SuperpositionMatrices(int Count, double[] P, double[] Q, double[] WhitenedCosine, double[] RawCosine, double Ridge, string? Note)
{
    /// <summary>
    /// The four matrices of keys [n, f] (row i = kᵢ) against C [f, f]. One Cholesky solve for all
    /// n keys, then G = K C⁻¹ Kᵀ [n, n] (symmetric) and Q = K Kᵀ, both in float64.
    /// </summary>
    public static SuperpositionMatrices Compute(double[] keys, int n, InverseSecondMoment cinv)
    {
        int f = cinv.Dim;
        if (n < 1) throw new ArgumentException("no keys");
        if (keys.Length != (long)n * f) throw new ArgumentException($"keys have {keys.Length} values, expected {n}x{f}");
        var y = cinv.SolveRows(keys, n); // [n, f], row i = C⁻¹kᵢ
        var g = new double[n * n];
        var q = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                double sg = 0, sq = 0;
                var ki = keys.AsSpan(i * f, f);
                var kj = keys.AsSpan(j * f, f);
                var yj = y.AsSpan(j * f, f);
                for (int t = 0; t < f; t++) { sg += ki[t] * yj[t]; sq += ki[t] * kj[t]; }
                g[i * n + j] = sg; q[i * n + j] = sq;
            }
        for (int i = 0; i < n; i++)
        {
            if (!(g[i * n + i] > 0)) throw new ArgumentException($"key {i} has kᵀC⁻¹k = {g[i * n + i]}: a zero key has no direction");
            if (!(q[i * n + i] > 0)) throw new ArgumentException($"key {i} is zero: a zero key has no direction");
        }
        var p = new double[n * n];
        var wc = new double[n * n];
        var rc = new double[n * n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
            {
                // G is symmetric in exact arithmetic; average the two solves so P's asymmetry is only the scaling.
                double gij = 0.5 * (g[i * n + j] + g[j * n + i]);
                p[i * n + j] = i == j ? 1 : gij / g[i * n + i];
                wc[i * n + j] = i == j ? 1 : gij / Math.Sqrt(g[i * n + i] * g[j * n + j]);
                rc[i * n + j] = i == j ? 1 : q[i * n + j] / Math.Sqrt(q[i * n + i] * q[j * n + j]);
            }
        return new SuperpositionMatrices(n, p, q, wc, rc, cinv.Ridge, cinv.Note);
    }

    /// <summary>The n(n − 1) off-diagonal entries of an [n, n] matrix, row by row.</summary>
    public static double[] OffDiagonal(double[] m, int n)
    {
        if (m.Length != n * n) throw new ArgumentException($"matrix has {m.Length} values, expected {n}x{n}");
        var o = new double[n * (n - 1)];
        int k = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                if (i != j) o[k++] = m[i * n + j];
        return o;
    }

    /// <summary>Angles in degrees, arccos of cosines clamped to [−1, 1] (rounding can step past ±1).</summary>
    public static double[] AnglesDegrees(ReadOnlySpan<double> cosines)
    {
        var a = new double[cosines.Length];
        for (int i = 0; i < a.Length; i++) a[i] = Math.Acos(Math.Clamp(cosines[i], -1, 1)) * 180 / Math.PI;
        return a;
    }
}
