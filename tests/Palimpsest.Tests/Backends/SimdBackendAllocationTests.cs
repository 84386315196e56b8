using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// A decode step's ops on a warm <see cref="SimdBackend"/> allocate nothing on the calling thread
/// (scratch and loop jobs are reused; Parallel.For would allocate its closures and tasks).
/// </summary>
public class SimdBackendAllocationTests
{
    [Fact]
    public void Decode_step_ops_allocate_nothing_once_warm()
    {
        using var b = new SimdBackend(threads: 2);
        const int d = 256, f = 1024, heads = 8, hd = 32, vocab = 1003, cache = 40; // 1x1024x256 reaches the parallel GEMV
        var x = b.Zeros(1, d); var g = b.Zeros(d); var bias = b.Zeros(d); var y = b.Zeros(1, d);
        var mean = b.Zeros(1); var rstd = b.Zeros(1);
        var wqkv = b.Zeros(d, 3 * d); var qkv = b.Zeros(1, 3 * d); var q = b.Zeros(1, d);
        var kc = b.Zeros(cache, d); var vc = b.Zeros(cache, d); var att = b.Zeros(1, d);
        var wup = b.Zeros(d, f); var up = b.Zeros(1, f); var wte = b.Zeros(vocab, d); var logits = b.Zeros(1, vocab);
        var xs = b.Zeros(8, d); var ys = b.Zeros(8, f);
        var k = b.RowPrefix(kc, 17); var v = b.RowPrefix(vc, 17);
        int[] id = [5];
        RopeFrequencies rope = 10000.0; // made once, as a Transformer does

        void Step()
        {
            b.Embed(id, wte, null, 0, x);
            b.LayerNorm(x, g, bias, 1e-5, y, mean, rstd);
            b.MatMul(y, false, wqkv, false, qkv);
            b.Rope(q, heads, hd, 8, false, rope, 16, false);
            b.CopyRows(q, 0, kc, 16, 1);
            b.Attention(q, k, v, heads, heads, hd, att, null);
            b.MatMul(y, false, wup, false, up);
            b.Activate(Activation.GeluTanh, up, up);
            b.AddBias(x, bias);
            b.Add(x, y, x);
            b.MatMul(x, false, wte, true, logits);
            b.MatMul(xs, false, wup, false, ys); // the blocked, packed GEMM path (8 rows)
            b.LogSoftmax(logits, logits);
        }

        for (int i = 0; i < 20; i++) Step();
        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 20; i++) Step();
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        // 0 in a quiet process. The one exception is one-time: the first time the calling thread has to
        // block on the workers (only under CPU contention, e.g. parallel test classes) the
        // ManualResetEventSlim lazily allocates its 24-byte lock object. Per-step allocation (Parallel.For's
        // tasks and closures: kilobytes per call) still fails this bound by far.
        Assert.True(allocated <= 64, $"20 warm decode steps allocated {allocated} bytes on the calling thread");
    }
}
