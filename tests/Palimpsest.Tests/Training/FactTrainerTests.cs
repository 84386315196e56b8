using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Journal;
using Palimpsest.Training;

namespace Palimpsest.Tests.Training;

public class FactTrainerTests
{
    private static ModelConfig Tiny(string dir, int vocab = 60)
    {
        Gpt2Checkpoint.WriteConfig(dir, dModel: 24, layers: 2, heads: 2, positions: 64, vocab: vocab, dtype: "float32");
        return ModelConfig.Load(Path.Combine(dir, "config.json"));
    }

    [Fact]
    public void Packing_puts_each_answer_token_and_the_eos_at_the_row_before_it()
    {
        using var tmp = new TempDir();
        var c = Tiny(tmp.Path);
        using var b = new SimdBackend();
        using var model = Model.FromHost(c, FactTrainer.Initialise(c, 1), b);
        var tr = new FactTrainer(new Transformer(model), eosId: 0);
        var ex = new[] { new FactExample(0, [5, 6, 7], [8, 9]), new FactExample(1, [10, 11], [12]) };
        var packs = tr.Pack(ex, 16, new Random(2));
        var p = Assert.Single(packs);
        Assert.Equal(10, p.Ids.Length); // 3 + 2 + EOS, 2 + 1 + EOS
        Assert.Equal(5, p.Rows.Length);
        for (int i = 0; i < p.Rows.Length; i++) Assert.Equal(p.Ids[p.Rows[i] + 1], p.Targets[i]);
        Assert.Equal(2, p.Examples.Count);
        Assert.Equal(5, p.Examples.Sum(e => e.Count));
        // a pack never exceeds its length: 6 tokens + 4 tokens do not fit in 9
        Assert.Equal(2, tr.Pack(ex, 9, new Random(2)).Count);
    }

    [Fact]
    public void A_tiny_model_learns_a_handful_of_facts_and_loss_falls()
    {
        using var tmp = new TempDir();
        var c = Tiny(tmp.Path);
        using var b = new SimdBackend();
        using var model = Model.FromHost(c, FactTrainer.Initialise(c, 1), b);
        var tf = new Transformer(model);
        var rng = new Random(5);
        var ex = Enumerable.Range(0, 12).Select(i => new FactExample(i, [1 + i, 20 + i % 3, 30], [40 + rng.Next(15)])).ToList();
        var log = new FactTrainer(tf, eosId: 0).Train(ex, new TrainOptions { MaxEpochs = 150, Lr = 1e-2, WarmupSteps = 5, BatchSequences = 2, PackLength = 5, TargetAccuracy = 1.0, WeightDecay = 0 }, cancel: TestContext.Current.CancellationToken);
        Assert.True(log[^1].Accuracy == 1.0, $"accuracy after {log.Count} epochs: {log[^1].Accuracy:0.00} (loss {log[^1].Loss:0.000})");
        Assert.True(log[^1].Loss < log[0].Loss / 5, $"loss {log[0].Loss:0.000} -> {log[^1].Loss:0.000}");
        // the trained model answers greedily from the prompt alone (PackLength 5: one example per sequence, as here)
        foreach (var e in ex)
        {
            using var r = tf.Forward(e.Prompt, new ForwardOptions { LogitsFrom = -1 });
            var l = new float[c.Vocab]; b.ToHost(r.Logits, l);
            Assert.Equal(e.Answer[0], System.Numerics.Tensors.TensorPrimitives.IndexOfMax(l));
        }
    }

    [Fact]
    public void A_written_gpt2_checkpoint_loads_back_with_the_same_logits()
    {
        using var tmp = new TempDir();
        var c = Tiny(tmp.Path);
        using var b = new SimdBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 3, 0.2), b);
        Gpt2Checkpoint.WriteWeights(tmp.Path, model, "F32");
        using var back = Model.Load(tmp.Path, b);
        int[] ids = [3, 14, 15, 9, 26, 5];
        using var r1 = new Transformer(model).Forward(ids);
        using var r2 = new Transformer(back).Forward(ids);
        var x = new float[r1.Logits.Length]; b.ToHost(r1.Logits, x);
        var y = new float[r2.Logits.Length]; b.ToHost(r2.Logits, y);
        Assert.True(x.AsSpan().SequenceEqual(y), "logits differ after a float32 round trip");
    }
}
