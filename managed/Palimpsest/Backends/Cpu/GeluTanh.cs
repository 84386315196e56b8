using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// GPT-2's gelu_tanh in one pass: s = sigmoid(2u) = 0.5·(1 + tanh u), u = sqrt(2/π)·(x + 0.044715·x³),
/// gelu(x) = x·s. The composition of TensorPrimitives calls it replaces made six passes, each over
/// the 64 values a prefill's column group gives a row: 7 of a GPT-2-small prefill's 180 ms went to
/// call overhead. The sigmoid comes from e = exp(−|2u|) ≤ 1 (neither overflows, and the far negative
/// tail keeps its relative precision). exp: Cody–Waite reduction by ln 2, degree-6 Taylor on
/// |r| ≤ ln2/2 (truncation below 1.3e-7 relative), the power of two put into the exponent bits.
/// Vector lanes and the scalar path do the same operations, so every element gets the same value
/// wherever it falls in a span (the tail runs through the vector code, zero-padded).
/// </summary>
internal static class GeluTanh
{
    internal const float Sqrt2OverPi = 0.7978845608028654f;
    internal const float C = 0.044715f;
    private const float Log2E = 1.44269504088896341f;
    private const float Ln2Hi = 0.693359375f, Ln2Lo = -2.12194440e-4f;
    /// <summary>Below this exp(y) would leave float's normal range: it is taken as 0.</summary>
    private const float MinExp = -87.3f;

    /// <summary>s = sigmoid(2u) for every x (s may alias x).</summary>
    public static void Gate(ReadOnlySpan<float> x, Span<float> s) => Run(x, s, times: false);

    /// <summary>y = gelu_tanh(x) = x·sigmoid(2u) (y may alias x).</summary>
    public static void Apply(ReadOnlySpan<float> x, Span<float> y) => Run(x, y, times: true);

    private static void Run(ReadOnlySpan<float> x, Span<float> dst, bool times)
    {
        if (dst.Length < x.Length) throw new ArgumentException("GeluTanh: destination shorter than source");
        int n = x.Length, i = 0;
        if (!Vector256.IsHardwareAccelerated)
        {
            for (; i < n; i++) dst[i] = times ? x[i] * Scalar(x[i]) : Scalar(x[i]);
            return;
        }
        ref float xr = ref MemoryMarshal.GetReference(x);
        ref float dr = ref MemoryMarshal.GetReference(dst);
        for (; i + 8 <= n; i += 8)
        {
            var v = Vector256.LoadUnsafe(ref xr, (nuint)i);
            var g = Gate(v);
            (times ? v * g : g).StoreUnsafe(ref dr, (nuint)i);
        }
        if (i == n) return;
        Span<float> t = stackalloc float[8];
        t.Clear();
        x[i..].CopyTo(t);
        var vt = Vector256.Create<float>(t);
        var gt = Gate(vt);
        (times ? vt * gt : gt).CopyTo(t);
        t[..(n - i)].CopyTo(dst[i..]);
    }

    /// <summary>sigmoid(2u) of eight values.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> Gate(Vector256<float> x)
    {
        var x3 = x * x * x;
        var v = (x + x3 * C) * (2 * Sqrt2OverPi);                     // v = 2u
        var y = -Vector256.Abs(v);                                     // y ≤ 0
        var low = Vector256.LessThan(y, Vector256.Create(MinExp));
        y = Vector256.Max(y, Vector256.Create(MinExp));
        var k = Vector256.Round(y * Log2E);                            // y = k·ln2 + r
        var r = Vector256.FusedMultiplyAdd(k, Vector256.Create(-Ln2Hi), y);
        r = Vector256.FusedMultiplyAdd(k, Vector256.Create(-Ln2Lo), r);
        var p = Vector256.Create(1f / 720);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 120));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 24));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(1f / 6));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256.Create(0.5f));
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        p = Vector256.FusedMultiplyAdd(p, r, Vector256<float>.One);
        var scale = Vector256.ShiftLeft(Vector256.ConvertToInt32(k) + Vector256.Create(127), 23).AsSingle();
        var e = Vector256.ConditionalSelect(low, Vector256<float>.Zero, p * scale);   // e = exp(−|v|)
        var q = Vector256<float>.One / (Vector256<float>.One + e);
        return Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(v, Vector256<float>.Zero), q, e * q);
    }

    /// <summary>The same operations on one value (CPUs without 256-bit vectors).</summary>
    internal static float Scalar(float x)
    {
        float x3 = x * x * x;
        float v = (x + x3 * C) * (2 * Sqrt2OverPi);
        float y = -MathF.Abs(v);
        bool low = y < MinExp;
        y = MathF.Max(y, MinExp);
        float k = MathF.Round(y * Log2E);
        float r = MathF.FusedMultiplyAdd(k, -Ln2Hi, y);
        r = MathF.FusedMultiplyAdd(k, -Ln2Lo, r);
        float p = 1f / 720;
        p = MathF.FusedMultiplyAdd(p, r, 1f / 120);
        p = MathF.FusedMultiplyAdd(p, r, 1f / 24);
        p = MathF.FusedMultiplyAdd(p, r, 1f / 6);
        p = MathF.FusedMultiplyAdd(p, r, 0.5f);
        p = MathF.FusedMultiplyAdd(p, r, 1f);
        p = MathF.FusedMultiplyAdd(p, r, 1f);
        float e = low ? 0f : p * BitConverter.Int32BitsToSingle(((int)k + 127) << 23);
        float q = 1f / (1f + e);
        return v >= 0 ? q : e * q;
    }
}
