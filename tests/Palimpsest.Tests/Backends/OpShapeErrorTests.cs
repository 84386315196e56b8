using Palimpsest.Backends;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// Every backend refuses malformed MatMul, CopyRows and attention calls with OpShapes' exception:
/// the same type and message for the same tensors. The CUDA row skips without a device; the
/// theory carries the Gpu trait so that the device script runs it.
/// </summary>
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public class OpShapeErrorTests
{
    public static TheoryData<string> Backends() => new([.. TestBackends.Cpu, "cuda-f32"]);

    private static void Same(IBackend b, string what, Action call, Action shapes)
    {
        var expected = Assert.ThrowsAny<ArgumentException>(shapes);
        var actual = Record.Exception(call);
        Assert.True(actual?.GetType() == expected.GetType() && actual.Message == expected.Message,
            $"{what} on {b.Name}: {actual?.GetType().Name ?? "no exception"} \"{actual?.Message}\"; OpShapes: {expected.GetType().Name} \"{expected.Message}\"");
    }

    [Theory, MemberData(nameof(Backends)), Trait(Palimpsest.Tests.Gpu.Gpu.Trait, Palimpsest.Tests.Gpu.Gpu.TraitValue)]
    public void Shape_errors_are_OpShapes_errors(string backend)
    {
        using var b = TestBackends.Create(backend);
        var owned = new List<Tensor>();
        Tensor Z(params int[] shape) { var t = b.Zeros(shape); owned.Add(t); return t; }
        try
        {
            // op(a) [2, 3] . op(b) [4, 5] -> c [2, 5]: K differs; transposed, M and N differ too
            var a = Z(2, 3); var w = Z(4, 5); var c = Z(2, 5);
            Same(b, "MatMul", () => b.MatMul(a, false, w, false, c), () => OpShapes.MatMul(a, false, w, false, c));
            Same(b, "MatMul transposed", () => b.MatMul(a, true, w, true, c), () => OpShapes.MatMul(a, true, w, true, c));

            var src = Z(4, 3); var wide = Z(4, 5); var dst = Z(4, 3);
            Same(b, "CopyRows columns", () => b.CopyRows(src, 0, wide, 0, 1), () => OpShapes.CopyRows(src, 0, wide, 0, 1));
            Same(b, "CopyRows rows", () => b.CopyRows(src, 3, dst, 0, 2), () => OpShapes.CopyRows(src, 3, dst, 0, 2));

            // T = S = 3, heads 2, kv heads 1, head dim 4: q, o [3, 8], k, v [3, 4]
            var q = Z(3, 8); var k = Z(3, 4); var v = Z(3, 4); var o = Z(3, 8);
            Same(b, "Attention window -1", () => b.Attention(q, k, v, 2, 1, 4, o, null, -1), () => OpShapes.Window(-1, "Attention"));
            Same(b, "AttentionBackward window -1", () => b.AttentionBackward(o, q, k, v, Z(2, 3, 3), 2, 1, 4, Z(3, 8), Z(3, 4), Z(3, 4), -1),
                () => OpShapes.Window(-1, "AttentionBackward"));
            Same(b, "Attention heads 0", () => b.Attention(q, k, v, 0, 1, 4, o, null), () => OpShapes.Attention(q, k, v, 0, 1, 4, o));
            Same(b, "Attention heads 3 over 2 kv heads", () => b.Attention(q, k, v, 3, 2, 4, o, null), () => OpShapes.Attention(q, k, v, 3, 2, 4, o));
            var o9 = Z(3, 9);
            Same(b, "Attention o", () => b.Attention(q, k, v, 2, 1, 4, o9, null), () => OpShapes.Attention(q, k, v, 2, 1, 4, o9));
            var v5 = Z(3, 5);
            Same(b, "Attention v", () => b.Attention(q, k, v5, 2, 1, 4, o, null), () => OpShapes.Attention(q, k, v5, 2, 1, 4, o));
            var q4 = Z(4, 8); var o4 = Z(4, 8);
            Same(b, "Attention S < T", () => b.Attention(q4, k, v, 2, 1, 4, o4, null), () => OpShapes.Attention(q4, k, v, 2, 1, 4, o4));
            var probs = Z(2, 3, 2);
            Same(b, "Attention probs", () => b.Attention(q, k, v, 2, 1, 4, o, probs), () => OpShapes.AttentionProbs(probs, 2, 3, 3, "Attention"));
            Same(b, "AttentionBackward dO", () => b.AttentionBackward(o9, q, k, v, Z(2, 3, 3), 2, 1, 4, Z(3, 8), Z(3, 4), Z(3, 4)),
                () => OpShapes.Attention(q, k, v, 2, 1, 4, o9));
            if (b is ISegmentAttention seg)
            {
                var k4 = Z(4, 4); var v4 = Z(4, 4);
                Same(b, "AttentionSegments rows", () => seg.AttentionSegments(q, k4, v4, [3], 2, 1, 4, o, null), () => OpShapes.Packed(q, k4, "AttentionSegments"));
            }
        }
        finally
        {
            foreach (var t in owned) t.Dispose();
        }
    }
}
