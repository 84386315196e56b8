using System.Diagnostics;
using Palimpsest.Editing;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.GpuBench;

/// <summary>
/// One ROME edit on the GPT2-XL-shaped model (layer 17, the published GPT2-XL hparams) with the
/// v* optimisation capped at a few steps so the run stays short. Wall-clock time (an edit reads
/// results back to the host between steps: Adam, the losses). mom2_adjustment is off (u = k̄ /
/// ||k̄||, i.e. C = I): with it the host would Cholesky-factor the 6400x6400 C once per layer (cached
/// across edits), which is not device work and would swamp a one-edit timing.
/// </summary>
public static class RomeEdit
{
    public static readonly EditRequest Request = new()
    {
        Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English", TargetTrue = "French",
    };

    /// <summary>(ms for an edit with <paramref name="steps"/> v* steps, the steps it ran, the number of v* prompts).</summary>
    public static (double Ms, int Steps, int Prompts) Time(Transformer tf, Rome rome, int steps)
    {
        var sw = Stopwatch.StartNew();
        var delta = rome.ComputeDeltas(tf, [Request]);
        double ms = sw.Elapsed.TotalMilliseconds;
        var t = rome.LastTrace!;
        if (delta.Count != 1 || t.Steps != steps - 1) throw new InvalidOperationException($"ROME ran {t.Steps + 1} v* steps, asked {steps}");
        return (ms, t.Steps + 1, t.ContextTemplates.Count + 1);
    }

    /// <summary>A ROME editor for <paramref name="steps"/> v* steps (published GPT2-XL values otherwise, early stop off).</summary>
    public static Rome Editor(Transformer tf, int steps) =>
        new(RomeHparams.Gpt2Xl with { VNumGradSteps = steps, Mom2Adjustment = false, VEarlyStopLoss = double.NegativeInfinity },
            TokenizerFactory.Gpt2(tf.Model.Config), _ => throw new InvalidOperationException("mom2_adjustment is off"));
}
