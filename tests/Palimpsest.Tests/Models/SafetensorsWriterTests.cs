using System.Buffers.Binary;
using System.Runtime.InteropServices;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Models;

/// <summary>Write then read back, for every dtype; atomicity of the writer.</summary>
public sealed class SafetensorsWriterTests : IDisposable
{
    private readonly StTempDir _tmp = new();
    public void Dispose() => _tmp.Dispose();

    /// <summary>Awkward values: signed zeros, subnormals of every format, ties, huge, inf, NaN.</summary>
    private static float[] AwkwardFloats(int n, int seed)
    {
        var r = new Random(seed);
        float[] special =
        [
            0f, -0f, 1f, -1f, 0.1f, 65504f, 65520f, -70000f, 6e-8f, 3e-8f, 1e-40f, -1e-45f, float.MaxValue,
            float.Epsilon, float.PositiveInfinity, float.NegativeInfinity, float.NaN, 1.00390625f, 1.01171875f,
        ];
        var x = new float[n];
        for (int i = 0; i < n; i++)
            x[i] = i < special.Length ? special[i] : i % 3 == 0
                ? BitConverter.Int32BitsToSingle(r.Next() | (r.Next(2) << 31))
                : (float)(r.NextDouble() * 8 - 4);
        return x;
    }

    [Theory]
    [InlineData("F32")]
    [InlineData("F16")]
    [InlineData("BF16")]
    [InlineData("F64")]
    public void FloatDataRoundTripsThroughEveryFloatDtype(string dtype)
    {
        var x = AwkwardFloats(3 * 37, 1);
        string path = _tmp[$"f32-{dtype}.safetensors"];
        SafetensorsWriter.Write(path, [("x", new HostTensor([3, 37], x), dtype)]);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(dtype, f.Info("x").DType);
        Assert.Equal([3, 37], f.Info("x").Shape);
        var back = f.ReadF32("x");
        for (int i = 0; i < x.Length; i++)
        {
            // What the file must hold: x rounded (nearest even) to the dtype, then widened exactly.
            float want = dtype switch
            {
                "F16" => (float)(Half)x[i],
                "BF16" => HalfConvert.BF16ToF32(HalfConvert.F32ToBF16(x[i])),
                _ => x[i],
            };
            Assert.True(want.Equals(back[i]), $"{dtype} element {i}: wrote {x[i]:R}, expected {want:R}, read {back[i]:R}");
        }
        var host = f.ReadHost("x");
        if (dtype == "F64") Assert.Equal(Array.ConvertAll(x, v => (double)v), host.F64);
        else Assert.Equal(back, host.F32);
    }

    [Theory]
    [InlineData("F64")]
    [InlineData("F32")]
    [InlineData("F16")]
    [InlineData("BF16")]
    public void DoubleDataRoundTripsThroughEveryFloatDtype(string dtype)
    {
        var r = new Random(2);
        var x = new double[29];
        for (int i = 0; i < x.Length; i++) x[i] = (r.NextDouble() - 0.5) * Math.Pow(2, r.Next(-30, 30));
        x[0] = Math.PI; x[1] = -0.0; x[2] = double.NaN; x[3] = 1e300;
        x[4] = 1 + Math.Pow(2, -11) + Math.Pow(2, -40);  // just above an f16 tie: must round up
        x[5] = 1 + Math.Pow(2, -8) + Math.Pow(2, -40);   // just above a bf16 tie: must round up
        string path = _tmp[$"f64-{dtype}.safetensors"];
        SafetensorsWriter.Write(path, [("x", new HostTensor([29], x), dtype)]);
        using var f = SafetensorsFile.Open(path);
        var back = f.ReadF64("x");
        for (int i = 0; i < x.Length; i++)
        {
            double want = dtype switch
            {
                "F64" => x[i],
                "F32" => (float)x[i],
                "F16" => (double)NearestByDistance(x[i], h => (double)BitConverter.UInt16BitsToHalf(h)),
                _ => NearestByDistance(x[i], b => HalfConvert.BF16ToF32(b)),
            };
            Assert.True(want.Equals(back[i]), $"{dtype} element {i}: wrote {x[i]:R}, expected {want:R}, read {back[i]:R}");
        }
        // Spelled out: rounding through f32 first would land on the tie and round down to 1.
        if (dtype == "F16") Assert.Equal(1 + Math.Pow(2, -10), back[4]);
        if (dtype == "BF16") Assert.Equal(1 + Math.Pow(2, -7), back[5]);
    }

    /// <summary>Independent reference for narrowing: scan every 16-bit pattern for the nearest
    /// finite value (ties to the even pattern); overflow beyond the largest value + half an ulp -> inf.</summary>
    private static double NearestByDistance(double x, Func<ushort, double> value)
    {
        if (double.IsNaN(x)) return double.NaN;
        double best = double.NaN, bestErr = double.PositiveInfinity;
        int bestBits = 0;
        double max = 0, ulpAtMax = 0;
        for (int b = 0; b < 0x10000; b++)
        {
            double v = value((ushort)b);
            if (!double.IsFinite(v)) continue;
            if (v > max) { ulpAtMax = v - max; max = v; }
            double err = Math.Abs(v - x);
            if (err < bestErr || (err == bestErr && (b & 1) == 0 && (bestBits & 1) == 1)) { best = v; bestErr = err; bestBits = b; }
        }
        if (Math.Abs(x) >= max + ulpAtMax / 2) return x > 0 ? double.PositiveInfinity : double.NegativeInfinity;
        return best == 0 && double.IsNegative(x) ? -0.0 : best;
    }

    [Fact]
    public void IntegerDtypesRoundTripFromRawBytes()
    {
        long[] i64 = [long.MinValue, -1, 0, 1, long.MaxValue];
        int[] i32 = [int.MinValue, -7, 0, 7, int.MaxValue];
        short[] i16 = [short.MinValue, -3, 0, 3, short.MaxValue];
        sbyte[] i8 = [sbyte.MinValue, -1, 0, 1, sbyte.MaxValue];
        byte[] u8 = [0, 1, 127, 128, 255];
        byte[] bools = [0, 1, 0, 1, 1];
        string path = _tmp["ints.safetensors"];
        SafetensorsWriter.Write(path,
        [
            ("i64", "I64", [5], MemoryMarshal.AsBytes<long>(i64).ToArray()),
            ("i32", "I32", [5], MemoryMarshal.AsBytes<int>(i32).ToArray()),
            ("i16", "I16", [5], MemoryMarshal.AsBytes<short>(i16).ToArray()),
            ("i8", "I8", [5, 1], MemoryMarshal.AsBytes<sbyte>(i8).ToArray()),
            ("u8", "U8", [1, 5], u8),
            ("bool", "BOOL", [5], bools),
        ], new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ids \"quoted\"" });
        using var f = SafetensorsFile.Open(path);
        Assert.Equal(i64, f.ReadI64("i64"));
        Assert.Equal(Array.ConvertAll(i32, v => (long)v), f.ReadI64("i32"));
        Assert.Equal(Array.ConvertAll(i16, v => (long)v), f.ReadI64("i16"));
        Assert.Equal(Array.ConvertAll(i8, v => (long)v), f.ReadI64("i8"));
        Assert.Equal(Array.ConvertAll(u8, v => (long)v), f.ReadI64("u8"));
        Assert.Equal([0L, 1, 0, 1, 1], f.ReadI64("bool"));
        Assert.Equal([5, 1], f.Info("i8").Shape);
        Assert.Equal("ids \"quoted\"", f.Metadata["note"]);
        Assert.Equal(["i64", "i32", "i16", "i8", "u8", "bool"], f.Tensors.Keys);
    }

    [Fact]
    public void LayoutIsInOrderAndAligned()
    {
        string path = _tmp["layout.safetensors"];
        SafetensorsWriter.Write(path,
        [
            ("z", new HostTensor([3], new float[] { 1, 2, 3 }), "F16"),
            ("a", new HostTensor([], new double[] { 7 }), "F64"),
            ("empty", new HostTensor([0, 4], Array.Empty<float>()), "F32"),
        ]);
        var bytes = File.ReadAllBytes(path);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, (8 + n) % 8);
        using var f = SafetensorsFile.Open(path);
        Assert.Equal((0L, 6L), (f.Info("z").Begin, f.Info("z").End));
        Assert.Equal((6L, 14L), (f.Info("a").Begin, f.Info("a").End));
        Assert.Empty(f.Info("a").Shape);
        Assert.Equal([7.0], f.ReadF64("a"));
        Assert.Equal([0, 4], f.Info("empty").Shape);
        Assert.Equal(8 + (long)n + 14, bytes.Length);
    }

    [Fact]
    public void FailedWriteLeavesNothingBehindAndKeepsTheOldFile()
    {
        string path = _tmp["model.safetensors"];
        SafetensorsWriter.Write(path, [("old", new HostTensor([2], new float[] { 1, 2 }), "F32")]);
        var before = File.ReadAllBytes(path);
        // The second tensor's data is 3 bytes short of its shape: found after the first is written.
        var e = Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path,
        [
            ("ok", "I64", [4], new byte[32]),
            ("bad", "I32", [4], new byte[13]),
        ]));
        Assert.Contains("'bad'", e.Message);
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(["model.safetensors"], Directory.GetFiles(_tmp.Dir).Select(Path.GetFileName));
    }

    [Fact]
    public void FailedFirstWriteCreatesNoFile()
    {
        string path = _tmp["new.safetensors"];
        Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [("a", "U8", [2], new byte[1])]));
        Assert.Empty(Directory.GetFiles(_tmp.Dir));
    }

    [Fact]
    public void RewritingAnOpenFileReplacesIt()
    {
        // Editors save over the checkpoint they loaded; the old mapping keeps the old bytes.
        string path = _tmp["m.safetensors"];
        SafetensorsWriter.Write(path, [("w", new HostTensor([2], new float[] { 1, 2 }), "F32")]);
        using var old = SafetensorsFile.Open(path);
        SafetensorsWriter.Write(path, [("w", new HostTensor([2], new float[] { 3, 4 }), "F32")]);
        Assert.Equal([1f, 2f], old.ReadF32("w"));
        using var now = SafetensorsFile.Open(path);
        Assert.Equal([3f, 4f], now.ReadF32("w"));
    }

    [Fact]
    public void RejectsBadRequests()
    {
        string path = _tmp["x.safetensors"];
        var t = new HostTensor([1], new float[1]);
        Assert.Contains("unknown dtype", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [("a", t, "F8")])).Message);
        Assert.Contains("not a float dtype", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [("a", t, "I64")])).Message);
        Assert.Contains("twice", Assert.Throws<ArgumentException>(() => SafetensorsWriter.Write(path, [("a", t, "F32"), ("a", t, "F32")])).Message);
        Assert.Empty(Directory.GetFiles(_tmp.Dir));
    }
}
