using Palimpsest.Backends.Cuda;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tests.Runtime;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// The v*/z* optimisation on CudaBackend with its steps recorded as CUDA graphs and replayed
/// (DeltaObjective.ReplaySteps, the default) against the same optimisation queued op by op: the
/// same step count, losses and δ within 1e-6 relative. GPT-2 (packed attention in one launch) and
/// llama (rotary: segment by segment), δ at layer 0 (the whole model is recorded) and at layer 2
/// (the forward resumes there), two packs (the context is 64 positions) with the KL prompt in the
/// second; float32 and float16 weights.
/// </summary>
[Trait(Gpu.Trait, Gpu.TraitValue)]
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public class CudaReplayedStepsTests
{
    [Theory]
    [InlineData("gpt2", 0, DType.F32)]
    [InlineData("gpt2", 2, DType.F32)]
    [InlineData("llama-gqa", 2, DType.F32)]
    [InlineData("gpt2", 2, DType.F16)]  // the products narrow their activations into temporaries
    public void Replayed_steps_give_the_op_by_op_result(string arch, int layer, DType storage)
    {
        Gpu.SkipIfUnavailable();
        var c = SmallConfigs.Get(arch) with { Layers = 4, MaxPositions = 64 };
        using var b = new CudaBackend(storage);
        using var model = Model.FromHost(c, RandomWeights.Create(c, 11, 0.3), b);
        using var tf = new Transformer(model);
        var rng = new Random(5);
        var (prompts, kl) = Editing.DeltaOptimizerTests.RandomPrompts(c.Vocab, rng);
        var replayed = new DeltaObjective(Steps: 6, Lr: 0.5, WeightDecay: 0.5, ClampNormFactor: 4, KlFactor: 0.0625, EarlyStopLoss: 0);
        var queued = replayed with { ReplaySteps = false };

        var a = DeltaOptimizer.Optimise(tf, layer, InterventionSite.MlpOutput, prompts, kl, 2.0, replayed);
        var e = DeltaOptimizer.Optimise(tf, layer, InterventionSite.MlpOutput, prompts, kl, 2.0, queued);
        Assert.Equal(e.Steps, a.Steps);
        Assert.True(Math.Abs(a.InitialLoss - e.InitialLoss) <= 1e-6 * Math.Abs(e.InitialLoss), $"initial loss {a.InitialLoss:R} vs {e.InitialLoss:R}");
        Assert.True(Math.Abs(a.FinalLoss - e.FinalLoss) <= 1e-6 * Math.Abs(e.FinalLoss), $"final loss {a.FinalLoss:R} vs {e.FinalLoss:R}");
        Assert.True(e.FinalLoss != e.InitialLoss && e.Delta.Any(x => x != 0), "the optimisation should have moved δ");
        Num.AssertClose(a.Delta, e.Delta, 1e-6, $"{arch} layer {layer} δ, replayed vs queued");
    }
}
