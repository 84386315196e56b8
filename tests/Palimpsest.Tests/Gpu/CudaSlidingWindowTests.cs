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
}
