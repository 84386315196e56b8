using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;

namespace Palimpsest.Tests.Runtime;

/// <summary>
/// A transformer reuses the logits of a result once it is disposed (a prefill's logits are tens of
/// MB, and fresh memory costs page faults): the reuse must never show — a result still held keeps
/// its values, and a forward into reused logits equals one into fresh ones.
/// </summary>
public sealed class LogitsRecyclingTests : IDisposable
{
    private readonly SimdBackend b = new(threads: 2);
    private readonly Model model;
    private readonly Transformer tf;

    public LogitsRecyclingTests()
    {
        var c = SmallConfigs.Get("gpt2");
        model = Model.FromHost(c, RandomWeights.Create(c, 5, 0.3), b);
        tf = new Transformer(model);
    }

    public void Dispose()
    {
        tf.Dispose();
        model.Dispose();
        b.Dispose();
    }

    [Fact]
    public void Disposed_logits_are_reused_and_held_ones_are_not_touched()
    {
        int[] first = [1, 5, 9, 2, 7], second = [3, 3, 8, 1, 4];

        float[] Host(ForwardResult r) { var h = new float[r.Logits.Length]; b.ToHost(r.Logits, h); return h; }
        float[] expectedSecond;
        using (var fresh = new Transformer(model))
        using (var r = fresh.Forward(second)) expectedSecond = Host(r);

        var held = tf.Forward(first);
        var heldValues = Host(held);
        using (var r2 = tf.Forward(second))
        {
            Assert.NotSame(held.Logits, r2.Logits);        // held: not available for reuse
            Assert.Equal(expectedSecond, Host(r2));
        }
        Assert.Equal(heldValues, Host(held));             // untouched by the second forward

        var disposedTensor = held.Logits;
        held.Dispose();
        held.Dispose();                                    // twice: still one spare, not two
        using var r3 = tf.Forward(second);
        Assert.Same(disposedTensor, r3.Logits);            // reused...
        Assert.Equal(expectedSecond, Host(r3));            // ...and wholly overwritten
        using var r4 = tf.Forward(first);
        Assert.NotSame(r3.Logits, r4.Logits);
        Assert.Equal(heldValues, Host(r4));
    }

    [Fact]
    public void Logits_of_another_shape_are_not_reused()
    {
        var r = tf.Forward([1, 2, 3]);
        var t = r.Logits;
        r.Dispose();
        using var longer = tf.Forward([1, 2, 3, 4]);
        Assert.NotSame(t, longer.Logits);
        Assert.Equal([4, model.Config.Vocab], longer.Logits.Shape);
    }
}
