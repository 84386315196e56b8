using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Runtime;

namespace Palimpsest.Tests.Training;

/// <summary>Logits at scattered rows (the trainer's answer tokens) against the full forward and backward.</summary>
public class LogitRowsTests
{
    public static TheoryData<string> Configs() => new(SmallConfigs.Names);

    [Theory, MemberData(nameof(Configs))]
    public void Selected_rows_equal_those_rows_of_the_full_logits_and_their_weight_gradients(string name)
    {
        var c = SmallConfigs.Get(name);
        using var b = new ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 5, 0.3), b);
        var tf = new Transformer(model);
        var rng = new Random(3);
        var ids = Enumerable.Range(0, 13).Select(_ => rng.Next(c.Vocab)).ToArray();
        int[] rows = [0, 4, 5, 11];
        var targets = rows.Select(_ => rng.Next(c.Vocab)).ToArray();

        // full forward: targets only at the selected rows
        using var full = tf.Forward(ids, new ForwardOptions { KeepForBackward = true });
        var fullTargets = Enumerable.Repeat(-1, ids.Length).ToArray();
        for (int i = 0; i < rows.Length; i++) fullTargets[rows[i]] = targets[i];
        using var dFull = b.Zeros(full.Logits.Shape);
        double lossFull = b.CrossEntropy(full.Logits, fullTargets, dFull);
        var gFull = model.ZerosLikeParams();
        tf.Backward(full, dFull, null, gFull);

        using var sel = tf.Forward(ids, new ForwardOptions { KeepForBackward = true, LogitRows = rows });
        Assert.Equal([rows.Length, c.Vocab], sel.Logits.Shape);
        var all = new double[full.Logits.Length]; b.ToHost(full.Logits, all);
        var got = new double[sel.Logits.Length]; b.ToHost(sel.Logits, got);
        for (int i = 0; i < rows.Length; i++)
            Assert.True(all.AsSpan(rows[i] * c.Vocab, c.Vocab).SequenceEqual(got.AsSpan(i * c.Vocab, c.Vocab)), $"row {rows[i]} differs");
        using var dSel = b.Zeros(sel.Logits.Shape);
        double lossSel = b.CrossEntropy(sel.Logits, targets, dSel);
        Assert.Equal(lossFull, lossSel, 12);
        var gSel = model.ZerosLikeParams();
        tf.Backward(sel, dSel, null, gSel);
        foreach (var ((n, a), (_, e)) in gSel.Named().Zip(gFull.Named()))
        {
            var x = new double[a.Length]; b.ToHost(a, x);
            var y = new double[e.Length]; b.ToHost(e, y);
            double err = Num.RelErr(x, y);
            Assert.True(err < 1e-12, $"gradient of {n}: relative error {err:E2}");
        }
    }

    [Fact]
    public void Bad_rows_are_refused_with_the_reason()
    {
        var c = SmallConfigs.Get("gpt2");
        using var b = new ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 5), b);
        var tf = new Transformer(model);
        int[] ids = [1, 2, 3, 4];
        Assert.Contains("strictly increasing", Assert.Throws<ArgumentException>(() => tf.Forward(ids, new ForwardOptions { LogitRows = [2, 1] })).Message);
        Assert.Contains("outside", Assert.Throws<ArgumentException>(() => tf.Forward(ids, new ForwardOptions { LogitRows = [4] })).Message);
        Assert.Contains("cannot both", Assert.Throws<ArgumentException>(() => tf.Forward(ids, new ForwardOptions { LogitRows = [3], LogitsFrom = 1 })).Message);
    }
}
