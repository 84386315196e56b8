using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tests.Runtime;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// The CUDA backend has no sliding window yet: a windowed model runs while its window masks nothing
/// (a sequence no longer than the window is full attention) and is refused in one line past it,
/// never run as if unwindowed. Skips without a device.
/// </summary>
[Collection(CudaCollection.Name)]
public class CudaSlidingWindowTests
{
    private static double[] Host(IBackend b, Tensor t) { var h = new double[t.Length]; b.ToHost(t, h); return h; }

    [Fact, Trait(Gpu.Trait, Gpu.TraitValue)]
    public void A_windowed_model_runs_within_its_window_and_is_refused_past_it()
    {
        var c = SmallConfigs.Get("mistral-window");
        int w = c.SlidingWindow!.Value;
        using var gpu = TestBackends.Create("cuda-f32");
        using var cpu = new ReferenceBackend();
        var host = RandomWeights.Create(c, 4, 0.3);
        using var gm = Model.FromHost(c, host, gpu);
        using var cm = Model.FromHost(c, host, cpu);
        int[] ids = [5, 2, 30, 7, 11, 3];
        using (var g = new Transformer(gm).Forward(ids.AsSpan(0, w)))
        using (var r = new Transformer(cm).Forward(ids.AsSpan(0, w)))
            Num.AssertClose(Host(gpu, g.Logits), Host(cpu, r.Logits), 1e-4, $"CUDA logits of {w} tokens, window {w}");
        var e = Assert.Throws<ArgumentException>(() => new Transformer(gm).Forward(ids).Dispose());
        Assert.StartsWith($"Attention: the CUDA backend does not implement sliding_window {w} (here {ids.Length} keys", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    /// <summary>
    /// The KV cache on CUDA keeps every row of a sliding layer (its kernels have no window to read a sliding
    /// layer's last rows with), so decoding is refused in the same line once the keys outnumber the window.
    /// </summary>
    [Fact, Trait(Gpu.Trait, Gpu.TraitValue)]
    public void Its_kv_cache_keeps_every_row_and_decoding_past_the_window_is_refused()
    {
        var c = SmallConfigs.Get("mistral-window");
        int w = c.SlidingWindow!.Value;
        using var gpu = TestBackends.Create("cuda-f32");
        using var gm = Model.FromHost(c, RandomWeights.Create(c, 4, 0.3), gpu);
        using var tf = new Transformer(gm);
        using var cache = new KvCache(gm, 16);
        for (int l = 0; l < c.Layers; l++) Assert.Equal(16, cache.Rows(l));
        int[] ids = [5, 2, 30, 7, 11, 3];
        using (tf.Forward(ids.AsSpan(0, w), null, cache)) { }
        var e = Assert.Throws<ArgumentException>(() => tf.Forward(ids.AsSpan(w, 1), null, cache).Dispose());
        Assert.StartsWith($"Attention: the CUDA backend does not implement sliding_window {w} (here {w + 1} keys", e.Message);
    }
}
