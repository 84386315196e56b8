using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// SimdBackend's fused linear ops (bias, residual and activation applied per finished column group
/// of the GEMM, on the thread that computed it) against their composition on the same backend
/// (<see cref="ComposedLinear"/>): the same float32 operations in the same order, so the results
/// must be the same bits — over one row (the GEMV), short M (the per-group epilogue, with a last
/// group of fewer than 64 columns) and tall M (the blocked path, one epilogue over all of c). With
/// the weight made as a weight (<see cref="SimdBackend.Weight(ReadOnlySpan{float}, int[])"/>) the
/// rows from 2 up run on its packed copy, whose epilogue runs per 8 x 32 tile (in passes of 256 rows:
/// 300 rows take two).
/// </summary>
public class SimdFusedLinearTests
{
    public static TheoryData<int, int, int, bool> Shapes()
    {
        var data = new TheoryData<int, int, int, bool>();
        foreach (var weight in new[] { false, true })
            foreach (var (rows, din, dout) in new[] { (1, 300, 1030), (7, 33, 200), (128, 300, 200), (300, 70, 130), (5, 17, 9) })
                data.Add(rows, din, dout, weight);
        return data;
    }

    [Theory, MemberData(nameof(Shapes))]
    public void Fused_linear_ops_equal_their_composition_bit_for_bit(int rows, int din, int dout, bool weight)
    {
        using var b = new SimdBackend(threads: 2);
        IFusedLinear fused = b, plain = new ComposedLinear(b);
        var rng = new Random(HashCode.Combine(rows, din, dout));
        float[] Values(int[] shape)
        {
            long n = 1; foreach (var s in shape) n *= s;
            var h = new float[n];
            for (int i = 0; i < h.Length; i++) h[i] = (float)(rng.NextDouble() * 4 - 2);
            return h;
        }
        Tensor Rand(params int[] shape) => b.FromHost(Values(shape), shape);
        float[] Host(Tensor t) { var h = new float[t.Length]; b.ToHost(t, h); return h; }
        void Same(Tensor want, Tensor got, string what)
        {
            float[] w = Host(want), g = Host(got);
            int bad = Enumerable.Range(0, w.Length).FirstOrDefault(i => BitConverter.SingleToInt32Bits(w[i]) != BitConverter.SingleToInt32Bits(g[i]), -1);
            Assert.True(bad < 0, $"{what} {rows}x{din}x{dout}{(weight ? " (weight)" : "")}: element {bad} is {(bad < 0 ? 0 : g[bad])}, the composition gives {(bad < 0 ? 0 : w[bad])}");
        }

        var x = Rand(rows, din);
        var w = weight ? b.Weight(Values([din, dout]), din, dout) : Rand(din, dout);
        var bias = Rand(dout);
        var res = Rand(rows, dout);
        Tensor y0 = Rand(rows, dout), y1 = Rand(rows, dout); // garbage in: the ops overwrite
        plain.Linear(x, w, bias, y0, res);
        fused.Linear(x, w, bias, y1, res);
        Same(y0, y1, "Linear + bias + residual");
        plain.Linear(x, w, null, y0, res);
        fused.Linear(x, w, null, y1, res);
        Same(y0, y1, "Linear + residual");
        plain.Linear(x, w, bias, y0);
        fused.Linear(x, w, bias, y1);
        Same(y0, y1, "Linear + bias");

        foreach (var act in new[] { Activation.GeluTanh, Activation.Silu, Activation.Relu, Activation.GeluErf })
        {
            Tensor up0 = Rand(rows, dout), key0 = Rand(rows, dout), up1 = Rand(rows, dout), key1 = Rand(rows, dout);
            plain.LinearAct(act, x, w, bias, up0, key0);
            fused.LinearAct(act, x, w, bias, up1, key1);
            Same(up0, up1, $"LinearAct({act}) up");
            Same(key0, key1, $"LinearAct({act}) key");
        }

        var w2 = Rand(din, 3); var y2a = Rand(rows, 3); var y2b = Rand(rows, 3);
        plain.Linear3(x, w, bias, y0, w2, null, y2a, w, null, res);
        var y1b = Rand(rows, dout); var resB = Rand(rows, dout);
        fused.Linear3(x, w, bias, y1, w2, null, y2b, w, null, resB);
        Same(y0, y1, "Linear3 first");
        Same(y2a, y2b, "Linear3 second");
        Same(res, resB, "Linear3 third");

        // three weights of 64 columns or more: on a weight, one GEMM over the three packed copies
        var w3 = weight ? b.Weight(Values([din, 70]), din, 70) : Rand(din, 70);
        var w4 = weight ? b.Weight(Values([din, dout]), din, dout) : Rand(din, dout);
        var bias3 = Rand(70);
        Tensor q0 = Rand(rows, dout), k0 = Rand(rows, 70), v0 = Rand(rows, dout), q1 = Rand(rows, dout), k1 = Rand(rows, 70), v1 = Rand(rows, dout);
        plain.Linear3(x, w, bias, q0, w3, bias3, k0, w4, null, v0);
        long packedBefore = b.PackedWeightBytes;
        fused.Linear3(x, w, bias, q1, w3, bias3, k1, w4, null, v1);
        Same(q0, q1, "Linear3 of three weights, first");
        Same(k0, k1, "Linear3 of three weights, second");
        Same(v0, v1, "Linear3 of three weights, third");
        if (weight && rows >= 2 && System.Runtime.Intrinsics.X86.Avx512F.IsSupported)
            Assert.True(b.PackedWeightBytes >= packedBefore && b.PackedWeightBytes > 0, "the three weights were not packed");
    }
}
