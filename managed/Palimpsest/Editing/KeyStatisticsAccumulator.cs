using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Palimpsest.Editing;

/// <summary>
/// Accumulates S = Σ_r k_r k_rᵀ [f, f] in float64 from blocks of key rows K [R, f] (a syrk: only the
/// upper triangle is summed, then mirrored). Rows are buffered so each pass over S streams many
/// tokens. Memory: f² doubles (320 MB at f = 6400, per layer) plus the row buffer.
/// </summary>
internal sealed class KeyStatisticsAccumulator
{
    public const int BlockRows = 64;

    private readonly int _f;
    private readonly double[] _upper;   // [f, f]; entry [j, i] for i >= j holds S[j, i]
    private readonly double[] _rows;    // [BlockRows, f] pending rows
    private int _pending;
    private bool _finished;

    public KeyStatisticsAccumulator(int f)
    {
        _f = f;
        _upper = new double[(long)f * f];
        _rows = new double[(long)BlockRows * f];
    }

    public long Tokens { get; private set; }

    /// <summary>Adds the rows of keys [T, f] (row-major).</summary>
    public void Add(ReadOnlySpan<double> keys)
    {
        if (_finished) throw new InvalidOperationException("rows added after Mean()");
        if (keys.Length % _f != 0) throw new ArgumentException($"keys of length {keys.Length} are not rows of {_f}");
        int t = keys.Length / _f;
        for (int r = 0; r < t; r++)
        {
            keys.Slice(r * _f, _f).CopyTo(_rows.AsSpan(_pending * _f, _f));
            Tokens++;
            if (++_pending == BlockRows) Flush();
        }
    }

    /// <summary>
    /// S / Tokens as a full symmetric [f, f] matrix (E[k kᵀ], uncentred), built in place in the
    /// accumulator's own buffer (no second f² array: 320 MB saved at f = 6400); the accumulator is
    /// finished afterwards.
    /// </summary>
    public double[] Mean()
    {
        if (_finished) throw new InvalidOperationException("Mean() was already taken");
        Flush();
        if (Tokens == 0) throw new InvalidOperationException("no tokens were accumulated");
        _finished = true;
        int f = _f;
        var c = _upper;
        double inv = 1.0 / Tokens;
        for (int j = 0; j < f; j++)
            for (int i = j; i < f; i++)
            {
                double v = c[(long)j * f + i] * inv;
                c[(long)j * f + i] = v;
                c[(long)i * f + j] = v;
            }
        return c;
    }

    private void Flush()
    {
        if (_pending == 0) return;
        int r = _pending;
        _pending = 0;
        if (Vector512.IsHardwareAccelerated) SyrkAvx512(_rows, r, _f, _upper);
        else if (Fma.IsSupported && Avx.IsSupported) SyrkAvx(_rows, r, _f, _upper);
        else SyrkScalar(_rows, r, _f, _upper, 0, _f);
    }

    // U[j, i] += Σ_r K[r, j] K[r, i] for j in [j0, j1), i >= j. The reference the fast path is tested against.
    internal static void SyrkScalar(double[] k, int rows, int f, double[] u, int j0, int j1)
    {
        for (int j = j0; j < j1; j++)
            for (int r = 0; r < rows; r++)
            {
                double a = k[(long)r * f + j];
                if (a == 0) continue;
                long kr = (long)r * f, uj = (long)j * f;
                for (int i = j; i < f; i++) u[uj + i] += a * k[kr + i];
            }
    }

    // Register-blocked: 4 rows j of U × 8 columns i (two Vector256) = 8 accumulators; per key row one
    // pair of loads, four broadcasts, eight FMAs. Blocks of 4 j-rows run in parallel (they write
    // disjoint rows of U). Columns i from the block's first j: entries left of the diagonal are
    // computed too (harmless; Mean() reads only i >= j).
    internal static void SyrkAvx(double[] k, int rows, int f, double[] u)
    {
        int jBlocks = (f + 3) / 4;
        Parallel.For(0, jBlocks, jb =>
        {
            int j0 = jb * 4;
            if (j0 + 4 > f) { SyrkScalar(k, rows, f, u, j0, f); return; }
            int i = j0;
            for (; i + 8 <= f; i += 8) Block4x8(k, rows, f, u, j0, i);
            if (i < f) Tail(k, rows, f, u, j0, i);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Block4x8(double[] k, int rows, int f, double[] u, int j0, int i0)
    {
        fixed (double* kp = k, up = u)
        {
            Vector256<double> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector256<double> b0 = default, b1 = default, b2 = default, b3 = default;
            double* row = kp;
            for (int r = 0; r < rows; r++, row += f)
            {
                var x0 = Avx.LoadVector256(row + i0);
                var x1 = Avx.LoadVector256(row + i0 + 4);
                var s0 = Vector256.Create(row[j0]);
                var s1 = Vector256.Create(row[j0 + 1]);
                var s2 = Vector256.Create(row[j0 + 2]);
                var s3 = Vector256.Create(row[j0 + 3]);
                a0 = Fma.MultiplyAdd(s0, x0, a0); b0 = Fma.MultiplyAdd(s0, x1, b0);
                a1 = Fma.MultiplyAdd(s1, x0, a1); b1 = Fma.MultiplyAdd(s1, x1, b1);
                a2 = Fma.MultiplyAdd(s2, x0, a2); b2 = Fma.MultiplyAdd(s2, x1, b2);
                a3 = Fma.MultiplyAdd(s3, x0, a3); b3 = Fma.MultiplyAdd(s3, x1, b3);
            }
            AddTo(up + (long)j0 * f + i0, a0, b0);
            AddTo(up + (long)(j0 + 1) * f + i0, a1, b1);
            AddTo(up + (long)(j0 + 2) * f + i0, a2, b2);
            AddTo(up + (long)(j0 + 3) * f + i0, a3, b3);
        }
    }

    // The same with Vector512: 4 rows j × 16 columns i.
    internal static void SyrkAvx512(double[] k, int rows, int f, double[] u)
    {
        int jBlocks = (f + 3) / 4;
        Parallel.For(0, jBlocks, jb =>
        {
            int j0 = jb * 4;
            if (j0 + 4 > f) { SyrkScalar(k, rows, f, u, j0, f); return; }
            int i = j0;
            for (; i + 16 <= f; i += 16) Block4x16(k, rows, f, u, j0, i);
            if (i < f) Tail(k, rows, f, u, j0, i);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void Block4x16(double[] k, int rows, int f, double[] u, int j0, int i0)
    {
        fixed (double* kp = k, up = u)
        {
            Vector512<double> a0 = default, a1 = default, a2 = default, a3 = default;
            Vector512<double> b0 = default, b1 = default, b2 = default, b3 = default;
            double* row = kp;
            for (int r = 0; r < rows; r++, row += f)
            {
                var x0 = Vector512.Load(row + i0);
                var x1 = Vector512.Load(row + i0 + 8);
                var s0 = Vector512.Create(row[j0]);
                var s1 = Vector512.Create(row[j0 + 1]);
                var s2 = Vector512.Create(row[j0 + 2]);
                var s3 = Vector512.Create(row[j0 + 3]);
                a0 = Vector512.FusedMultiplyAdd(s0, x0, a0); b0 = Vector512.FusedMultiplyAdd(s0, x1, b0);
                a1 = Vector512.FusedMultiplyAdd(s1, x0, a1); b1 = Vector512.FusedMultiplyAdd(s1, x1, b1);
                a2 = Vector512.FusedMultiplyAdd(s2, x0, a2); b2 = Vector512.FusedMultiplyAdd(s2, x1, b2);
                a3 = Vector512.FusedMultiplyAdd(s3, x0, a3); b3 = Vector512.FusedMultiplyAdd(s3, x1, b3);
            }
            AddTo(up + (long)j0 * f + i0, a0, b0);
            AddTo(up + (long)(j0 + 1) * f + i0, a1, b1);
            AddTo(up + (long)(j0 + 2) * f + i0, a2, b2);
            AddTo(up + (long)(j0 + 3) * f + i0, a3, b3);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AddTo(double* dst, Vector512<double> lo, Vector512<double> hi)
    {
        Vector512.Store(Vector512.Load(dst) + lo, dst);
        Vector512.Store(Vector512.Load(dst + 8) + hi, dst + 8);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static unsafe void AddTo(double* dst, Vector256<double> lo, Vector256<double> hi)
    {
        Avx.Store(dst, Avx.Add(Avx.LoadVector256(dst), lo));
        Avx.Store(dst + 4, Avx.Add(Avx.LoadVector256(dst + 4), hi));
    }

    // Columns [i0, f) (fewer than one register block) of rows j0..j0+3.
    private static void Tail(double[] k, int rows, int f, double[] u, int j0, int i0)
    {
        for (int j = j0; j < j0 + 4; j++)
            for (int r = 0; r < rows; r++)
            {
                double a = k[(long)r * f + j];
                long kr = (long)r * f, uj = (long)j * f;
                for (int i = i0; i < f; i++) u[uj + i] += a * k[kr + i];
            }
    }
}
