using System.Runtime.InteropServices;
using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>The safetensors dtypes Palimpsest reads and writes (names as in the format).</summary>
internal enum StDType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL }

internal static class SafetensorsDTypes
{
    public const string Supported = "F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL";

    public static bool TryParse(string s, out StDType t)
    {
        // Enum.TryParse would also accept numbers and other casings; the format is exact.
        foreach (var v in Enum.GetValues<StDType>())
            if (v.ToString() == s) { t = v; return true; }
        t = default;
        return false;
    }

    public static int Size(this StDType t) => t switch
    {
        StDType.F64 or StDType.I64 => 8,
        StDType.F32 or StDType.I32 => 4,
        StDType.F16 or StDType.BF16 or StDType.I16 => 2,
        _ => 1,
    };

    public static bool IsFloat(this StDType t) => t is StDType.F64 or StDType.F32 or StDType.F16 or StDType.BF16;

    // src: n little-endian elements of t, possibly unaligned -> dst [n] f32 (f64 rounds, others exact)
    public static void DecodeF32(StDType t, ReadOnlySpan<byte> src, Span<float> dst)
    {
        switch (t)
        {
            case StDType.F32: MemoryMarshal.Cast<byte, float>(src).CopyTo(dst); break;
            case StDType.F16: HalfConvert.F16ToF32(MemoryMarshal.Cast<byte, Half>(src), dst); break;
            case StDType.BF16: HalfConvert.BF16ToF32(MemoryMarshal.Cast<byte, ushort>(src), dst); break;
            case StDType.F64:
            {
                var s = MemoryMarshal.Cast<byte, double>(src);
                for (int i = 0; i < s.Length; i++) dst[i] = (float)s[i];
                break;
            }
            default: throw new InvalidOperationException($"{t} is not a float dtype");
        }
    }

    // src: n elements of a float dtype -> dst [n] f64, exact
    public static void DecodeF64(StDType t, ReadOnlySpan<byte> src, Span<double> dst)
    {
        if (t == StDType.F64) { MemoryMarshal.Cast<byte, double>(src).CopyTo(dst); return; }
        // Widen via f32 (exact for F32/F16/BF16) in small pieces to keep the scratch on the stack.
        Span<float> tmp = stackalloc float[1024];
        int size = t.Size();
        for (int i = 0; i < dst.Length; i += tmp.Length)
        {
            int m = Math.Min(tmp.Length, dst.Length - i);
            DecodeF32(t, src.Slice(i * size, m * size), tmp[..m]);
            for (int k = 0; k < m; k++) dst[i + k] = tmp[k];
        }
    }

    // src: n elements of an int dtype (or BOOL) -> dst [n] i64, exact
    public static void DecodeI64(StDType t, ReadOnlySpan<byte> src, Span<long> dst)
    {
        switch (t)
        {
            case StDType.I64: MemoryMarshal.Cast<byte, long>(src).CopyTo(dst); break;
            case StDType.I32: Widen(MemoryMarshal.Cast<byte, int>(src), dst); break;
            case StDType.I16: Widen(MemoryMarshal.Cast<byte, short>(src), dst); break;
            case StDType.I8: Widen(MemoryMarshal.Cast<byte, sbyte>(src), dst); break;
            case StDType.U8: Widen(src, dst); break;
            case StDType.BOOL: for (int i = 0; i < src.Length; i++) dst[i] = src[i] != 0 ? 1 : 0; break;
            default: throw new InvalidOperationException($"{t} is not an integer dtype");
        }
    }

    private static void Widen<T>(ReadOnlySpan<T> s, Span<long> dst) where T : System.Numerics.IBinaryInteger<T>
    {
        for (int i = 0; i < s.Length; i++) dst[i] = long.CreateTruncating(s[i]);
    }
}
