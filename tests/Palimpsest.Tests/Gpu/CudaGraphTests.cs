using Palimpsest.Backends.Cuda;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// CudaBackend.Capture: a KV-cache decode step recorded into a CUDA graph and replayed gives the
/// logits of the same step run op by op, and fills the cache row the next step reads.
/// </summary>
[Trait(Gpu.Trait, Gpu.TraitValue)]
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public class CudaGraphTests
{
    private static double[] Host(CudaBackend b, Tensor t) { var h = new double[t.Length]; b.ToHost(t, h); return h; }

    [Theory]
    [InlineData("gpt2")]
    [InlineData("llama")]
    public void A_replayed_decode_step_matches_the_step_run_op_by_op(string arch)
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        using var model = Model.Load(Paths.Fixture(arch), b);
        using var reference = SafetensorsFile.Open(Path.Combine(Paths.Fixture(arch), "reference.safetensors"));
        int[] seq = reference.ReadI64("input_ids").Take(8).Select(x => (int)x).ToArray();
        using var tf = new Transformer(model);

        // op by op: prefill 5, steps at positions 5 and 6
        using var a = new KvCache(model, 16);
        using (tf.Forward(seq.AsSpan(0, 5), null, a)) { }
        double[] step5, step6;
        using (var r = tf.Forward(seq.AsSpan(5, 1), null, a)) step5 = Host(b, r.Logits);
        using (var r = tf.Forward(seq.AsSpan(6, 1), null, a)) step6 = Host(b, r.Logits);

        // captured: prefill 5, the step at 5 recorded (nothing runs), replayed twice, then step 6 op by op
        using var c = new KvCache(model, 16);
        using (tf.Forward(seq.AsSpan(0, 5), null, c)) { }
        ForwardResult? captured = null;
        var graph = b.Capture(() => captured = tf.Forward(seq.AsSpan(5, 1), null, c));
        try
        {
            graph.Launch();
            graph.Launch(); // idempotent: the same row 5 and the same logits
            Num.AssertClose(Host(b, captured!.Logits), step5, 1e-6, $"{arch} replayed step 5 logits");
            using var r6 = tf.Forward(seq.AsSpan(6, 1), null, c);
            Num.AssertClose(Host(b, r6.Logits), step6, 1e-6, $"{arch} step 6 after a replayed step 5 (its cache row)");
        }
        finally
        {
            graph.Dispose();
            captured?.Dispose();
        }
    }

    [Fact]
    public void Capture_refuses_uncached_allocations_and_reads_and_leaves_the_backend_usable()
    {
        Gpu.SkipIfUnavailable();
        using var b = new CudaBackend();
        var e = Assert.Throws<InvalidOperationException>(() => b.Capture(() => { using var t = b.Zeros(123, 457); }));
        Assert.Contains("not in the cache", e.Message);
        using var x = b.FromHost(new float[] { 1, 2, 3 }, 3);
        var r = Assert.Throws<InvalidOperationException>(() => b.Capture(() => b.ToHost(x, new float[3])));
        Assert.Contains("reading a tensor back", r.Message);
        using var y = b.Zeros(3);
        b.Add(x, x, y);
        var h = new float[3];
        b.ToHost(y, h);
        Assert.Equal(new float[] { 2, 4, 6 }, h);
    }
}
