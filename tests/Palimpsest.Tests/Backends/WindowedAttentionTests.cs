using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Backends;

/// <summary>
/// The sliding window of attention on the float64 reference, against its definition: the query at
/// position i sees the keys i − window &lt; j ≤ i (transformers' sliding_window_overlay), so its output is
/// plain causal attention over just those keys. (SimdBackendOpTests holds the SIMD backend to the
/// reference; tests/fixtures/swa holds both to torch.)
/// </summary>
public class WindowedAttentionTests
{
    private static double[] Rand(Random r, int n) => Enumerable.Range(0, n).Select(_ => 2 * r.NextDouble() - 1).ToArray();

    [Theory]
    [InlineData(7, 7, 3, 5, 1, 1)]   // prefill, one kv head, every query but the first three windowed
    [InlineData(5, 12, 4, 4, 2, 4)]  // queries after 7 cached keys, grouped heads
    [InlineData(1, 13, 6, 3, 3, 6)]  // a decode step
    [InlineData(6, 9, 1, 2, 1, 3)]   // window 1: each query sees itself only
    public void Each_query_attends_its_window_exactly(int T, int S, int window, int hd, int kvHeads, int heads)
    {
        using var b = new ReferenceBackend();
        var rng = new Random(T * 100 + S);
        int qc = heads * hd, kc = kvHeads * hd;
        double[] qh = Rand(rng, T * qc), kh = Rand(rng, S * kc), vh = Rand(rng, S * kc);
        using var q = b.FromHost(qh, T, qc); using var k = b.FromHost(kh, S, kc); using var v = b.FromHost(vh, S, kc);
        using var o = b.Zeros(T, qc); using var probs = b.Zeros(heads, T, S);
        b.Attention(q, k, v, heads, kvHeads, hd, o, probs, window);
        var got = new double[T * qc]; b.ToHost(o, got);
        var p = new double[heads * T * S]; b.ToHost(probs, p);
        for (int t = 0; t < T; t++)
        {
            int i = S - T + t, lo = Math.Max(0, i - window + 1), n = i + 1 - lo; // keys lo..i
            // query t alone, as the last query over keys lo..i: unwindowed attention over the window
            using var q1 = b.FromHost(qh.AsSpan(t * qc, qc).ToArray(), 1, qc);
            using var k1 = b.FromHost(kh.AsSpan(lo * kc, n * kc).ToArray(), n, kc);
            using var v1 = b.FromHost(vh.AsSpan(lo * kc, n * kc).ToArray(), n, kc);
            using var o1 = b.Zeros(1, qc);
            b.Attention(q1, k1, v1, heads, kvHeads, hd, o1, null);
            var want = new double[qc]; b.ToHost(o1, want);
            Num.AssertClose(got.AsSpan(t * qc, qc), want, 1e-14, $"query {t} at position {i}, window {window}");
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < S; j++)
                {
                    double pj = p[(h * T + t) * S + j];
                    Assert.True(j >= lo && j <= i ? pj > 0 : pj == 0, $"probs[{h}, {t}, {j}] = {pj} for keys {lo}..{i}");
                }
        }
    }

    [Fact]
    public void A_window_as_long_as_the_keys_is_full_attention_and_a_shorter_one_is_not()
    {
        using var b = new ReferenceBackend();
        var rng = new Random(5);
        const int T = 6, S = 9, hd = 4, heads = 2;
        using var q = b.FromHost(Rand(rng, T * heads * hd), T, heads * hd);
        using var k = b.FromHost(Rand(rng, S * heads * hd), S, heads * hd);
        using var v = b.FromHost(Rand(rng, S * heads * hd), S, heads * hd);
        double[] Run(int window)
        {
            using var o = b.Zeros(T, heads * hd);
            b.Attention(q, k, v, heads, heads, hd, o, null, window);
            var h = new double[T * heads * hd]; b.ToHost(o, h); return h;
        }
        var full = Run(0);
        Assert.Equal(full, Run(S));
        Assert.Equal(full, Run(1000));
        Assert.True(Num.RelErr(Run(S - 1), full) > 1e-3, "a window one key short of S changed nothing");
    }

    [Fact]
    public void Cuda_refuses_a_window_that_masks_a_key_in_one_line_naming_sliding_window()
    {
        // the check runs before any launch, so it is tested without a device
        Palimpsest.Backends.Cuda.CudaBackend.RefuseWindow(0, 5000, "Attention");
        Palimpsest.Backends.Cuda.CudaBackend.RefuseWindow(4096, 4096, "Attention"); // masks nothing
        var e = Assert.Throws<ArgumentException>(() => Palimpsest.Backends.Cuda.CudaBackend.RefuseWindow(4096, 4097, "Attention"));
        Assert.StartsWith("Attention: the CUDA backend does not implement sliding_window 4096 (here 4097 keys", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Palimpsest.Backends.Cuda.CudaBackend.RefuseWindow(-1, 3, "Attention"));
    }
}
