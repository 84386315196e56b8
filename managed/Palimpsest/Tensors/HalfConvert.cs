using System.Numerics;
using System.Numerics.Tensors;
using System.Runtime.InteropServices;

namespace Palimpsest.Tensors;

/// <summary>
/// Conversions between float32 and the 16-bit float formats that checkpoints are stored in.
/// Widening (f16/bf16 -> f32) is exact; narrowing rounds to nearest, ties to even, like torch.
/// bf16 is the top half of an f32, so it is handled with integer shifts; f16 goes through
/// System.Half (TensorPrimitives vectorises it).
/// </summary>
public static class HalfConvert
{
    // src [n] f16 -> dst [n] f32, exact
    public static void F16ToF32(ReadOnlySpan<Half> src, Span<float> dst)
    {
        CheckLengths(src.Length, dst.Length);
        TensorPrimitives.ConvertToSingle(src, dst);
    }

    // src [n] f16 bit patterns -> dst [n] f32, exact
    public static void F16ToF32(ReadOnlySpan<ushort> bits, Span<float> dst) =>
        F16ToF32(MemoryMarshal.Cast<ushort, Half>(bits), dst);

    // src [n] f32 -> dst [n] f16, round to nearest even (overflow -> ±inf)
    public static void F32ToF16(ReadOnlySpan<float> src, Span<Half> dst)
    {
        CheckLengths(src.Length, dst.Length);
        TensorPrimitives.ConvertToHalf(src, dst);
    }

    // src [n] bf16 bit patterns -> dst [n] f32, exact
    public static void BF16ToF32(ReadOnlySpan<ushort> src, Span<float> dst)
    {
        CheckLengths(src.Length, dst.Length);
        var d = MemoryMarshal.Cast<float, uint>(dst);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int w = Vector<ushort>.Count, half = Vector<uint>.Count;
            for (; i + w <= src.Length; i += w)
            {
                Vector.Widen(new Vector<ushort>(src[i..]), out Vector<uint> lo, out Vector<uint> hi);
                Vector.ShiftLeft(lo, 16).CopyTo(d[i..]);
                Vector.ShiftLeft(hi, 16).CopyTo(d[(i + half)..]);
            }
        }
        for (; i < src.Length; i++) d[i] = (uint)src[i] << 16;
    }

    // src [n] f32 -> dst [n] bf16 bit patterns, round to nearest even; NaN stays NaN (quieted)
    public static void F32ToBF16(ReadOnlySpan<float> src, Span<ushort> dst)
    {
        CheckLengths(src.Length, dst.Length);
        var s = MemoryMarshal.Cast<float, uint>(src);
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int w = Vector<uint>.Count;
            for (; i + 2 * w <= s.Length; i += 2 * w)
            {
                var a = RoundToBF16(new Vector<uint>(s[i..]));
                var b = RoundToBF16(new Vector<uint>(s[(i + w)..]));
                Vector.Narrow(a, b).CopyTo(dst[i..]);
            }
        }
        for (; i < s.Length; i++) dst[i] = F32ToBF16(src[i]);
    }

    public static float BF16ToF32(ushort bits) => BitConverter.UInt32BitsToSingle((uint)bits << 16);

    /// <summary>f32 -> bf16 bits, round to nearest even. Adding 0x7FFF plus the kept lsb and
    /// truncating is exactly RNE on the sign-magnitude bit pattern (carry into the exponent
    /// is the correct rounding up, up to infinity).</summary>
    public static ushort F32ToBF16(float f)
    {
        uint u = BitConverter.SingleToUInt32Bits(f);
        if ((u & 0x7FFF_FFFF) > 0x7F80_0000) return (ushort)((u >> 16) | 0x40); // NaN: keep it a (quiet) NaN
        return (ushort)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
    }

    private static Vector<uint> RoundToBF16(Vector<uint> v)
    {
        var hi = Vector.ShiftRightLogical(v, 16);
        var rounded = Vector.ShiftRightLogical(v + new Vector<uint>(0x7FFF) + (hi & Vector<uint>.One), 16);
        var nan = Vector.GreaterThan(v & new Vector<uint>(0x7FFF_FFFF), new Vector<uint>(0x7F80_0000));
        return Vector.ConditionalSelect(nan, hi | new Vector<uint>(0x40), rounded);
    }

    /// <summary>f64 -> bf16 bits, correctly rounded (no double rounding through f32).</summary>
    public static ushort F64ToBF16(double d) => F32ToBF16(RoundToOddF32(d));

    /// <summary>f64 -> f16, correctly rounded (no double rounding through f32).</summary>
    public static Half F64ToF16(double d) => (Half)RoundToOddF32(d);

    /// <summary>
    /// d rounded to f32 with round-to-odd: inexact results get their last bit forced to 1.
    /// Rounding that value again to a format with at least 2 fewer significant bits (f16: 11,
    /// bf16: 8, vs 24) gives the same result as rounding d directly — the standard cure for
    /// double rounding.
    /// </summary>
    internal static float RoundToOddF32(double d)
    {
        float f = (float)d;
        if (double.IsNaN(d) || (double)f == d) return f;
        uint b = BitConverter.SingleToUInt32Bits(f);
        if (Math.Abs((double)f) > Math.Abs(d)) b--; // step toward zero: sign-magnitude, so -1 on the bits
        return BitConverter.UInt32BitsToSingle(b | 1);
    }

    private static void CheckLengths(int src, int dst)
    {
        if (src != dst) throw new ArgumentException($"source has {src} elements, destination {dst}");
    }
}
