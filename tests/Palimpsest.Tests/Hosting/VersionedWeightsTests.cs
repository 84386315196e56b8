using Palimpsest.Hosting;
using Palimpsest.Models;
using Palimpsest.Tensors;
using Xunit;

namespace Palimpsest.Tests.Hosting;

/// <summary>Versions share unchanged tensors; a retired version is freed with its last pin, a tensor disposed with its last version, base tensors never.</summary>
public class VersionedWeightsTests
{
    private sealed class Counted(string name) : Tensor([1], DType.F32)
    {
        public string Name { get; } = name;
        public int Disposed;
        public override void Dispose() { Disposed++; base.Dispose(); }
    }

    private static ParamSet<Tensor> Base(int blocks)
    {
        Counted T(string n) => new(n);
        return new ParamSet<Tensor>
        {
            Wte = T("wte"), LnFG = T("lnf"), Head = T("head"),
            Blocks = Enumerable.Range(0, blocks).Select(b => new BlockParams<Tensor>
            {
                Ln1G = T($"ln{b}"), Wq = T($"q{b}"), Wk = T($"k{b}"), Wv = T($"v{b}"), Wo = T($"o{b}"), WUp = T($"up{b}"), WDown = T($"down{b}"),
            }).ToArray(),
        };
    }

    [Fact]
    public void Tensors_go_with_the_last_version_that_holds_them()
    {
        var p = Base(3);
        var w = new VersionedWeights(p, 0);
        var reader = w.Pin(); // a request on version 0
        var a = new Counted("a");
        var v1 = w.Publish(1, new Dictionary<int, Tensor> { [1] = a });
        Assert.Same(a, v1.Params.Blocks[1].WDown);
        Assert.Same(p.Blocks[0].WDown, v1.Params.Blocks[0].WDown); // shared, not copied
        Assert.Equal(0, reader.Version.Number);
        Assert.Equal(2, w.LiveVersions); // version 0 stays while its request runs

        var b = new Counted("b");
        var v2 = w.Publish(2, new Dictionary<int, Tensor> { [2] = b }); // version 1 had no pin: freed now, but a lives on in v2
        Assert.Equal(0, a.Disposed);
        Assert.Same(a, v2.Params.Blocks[1].WDown);
        var mid = w.Pin(); // a request on version 2
        var c = new Counted("c");
        w.Publish(3, new Dictionary<int, Tensor> { [1] = c }); // a is in version 2 only
        Assert.Equal(0, a.Disposed);
        mid.Dispose();
        Assert.Equal(1, a.Disposed); // version 2 freed: a with it, b still in version 3
        Assert.Equal(0, b.Disposed);
        reader.Dispose();
        Assert.Equal(1, w.LiveVersions);
        Assert.Equal(3, w.FreedVersions);
        Assert.All(p.Named(), t => Assert.Equal(0, ((Counted)t.Value).Disposed)); // the base model's own
        mid.Dispose(); // twice: nothing more
        Assert.Equal(1, a.Disposed);
    }

    [Fact]
    public async Task Pins_and_publishes_racing_free_every_version_once()
    {
        var p = Base(2);
        var w = new VersionedWeights(p, 0);
        var made = new List<Counted>();
        using var stop = new CancellationTokenSource();
        var readers = Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
                using (var pin = w.Pin())
                    Assert.True(pin.Version.Pins > 0, $"pinned version {pin.Version.Number} is freed");
        })).ToArray();
        for (int i = 1; i <= 2000; i++)
        {
            var t = new Counted($"t{i}");
            made.Add(t);
            w.Publish(i, new Dictionary<int, Tensor> { [i % 2] = t });
        }
        stop.Cancel();
        await Task.WhenAll(readers);
        Assert.Equal(1, w.LiveVersions);
        Assert.Equal(2000, w.FreedVersions);
        // every tensor but the two the current version holds was disposed exactly once
        Assert.All(made.Take(made.Count - 2), t => Assert.Equal(1, t.Disposed));
        Assert.All(made.TakeLast(2), t => Assert.Equal(0, t.Disposed));
    }
}
