using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Evaluation;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tests.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Evaluation;

public sealed class EvaluationTests
{
    private static readonly WordTokenizer Tok = WordTokenizer.Facts();

    private static Model Random(int seed = 7) =>
        Model.FromHost(SmallConfigs.Get("gpt2"), RandomWeights.Create(SmallConfigs.Get("gpt2"), seed, scale: 0.3), new ReferenceBackend());

    /// <summary>
    /// A model whose logits are the same vector z at every position, whatever the input: the final
    /// norm's gain is zero, so its output is its bias b, and z = Wte · b (tied head). Every score is
    /// then known in closed form: log p(id) = z[id] − logsumexp(z).
    /// </summary>
    private static (Model Model, double[] LogP) ConstantLogits()
    {
        var cfg = SmallConfigs.Get("gpt2");
        var host = RandomWeights.Create(cfg, seed: 11, scale: 0.5);
        if (host.LnFG.F64 is { } g64) Array.Clear(g64); else Array.Clear(host.LnFG.F32!);
        var b = host.LnFB!;
        var wte = host.Wte;
        var z = new double[cfg.Vocab];
        for (int v = 0; v < cfg.Vocab; v++)
            for (int i = 0; i < cfg.DModel; i++) z[v] += wte[v * cfg.DModel + i] * b[i];
        double max = z.Max(), lse = max + Math.Log(z.Sum(x => Math.Exp(x - max)));
        return (Model.FromHost(cfg, host, new ReferenceBackend()), z.Select(x => x - lse).ToArray());
    }

    private static int ArgMax(double[] x) => Array.IndexOf(x, x.Max());
    private static int ArgMin(double[] x) => Array.IndexOf(x, x.Min());

    [Fact]
    public void TargetScorer_MatchesFullForwardLogSoftmax_OnMultiTokenTargets()
    {
        using var model = Random();
        var tf = new Transformer(model);
        var scorer = new TargetScorer(tf, Tok);
        foreach (var (prompt, target) in new[] { ("The mother tongue of Danielle Darrieux is", "French"), ("Where", "people speak the language of Rome"), ("The", "x y z w v") })
        {
            var s = scorer.Score(prompt, target);
            int[] p = Tok.Encode(prompt), t = Tok.Encode(" " + target);
            // Reference: the whole sequence, every row's logits, log-softmax by hand.
            int[] ids = [.. p, .. t];
            using var r = tf.Forward(ids);
            int V = model.Config.Vocab;
            var logits = new double[ids.Length * V];
            model.Backend.ToHost(r.Logits, logits);
            Assert.Equal(t.Length, s.LogProbs.Length);
            for (int j = 0; j < t.Length; j++)
            {
                var row = logits.AsSpan((p.Length + j - 1) * V, V);
                double max = double.NegativeInfinity; foreach (var x in row) max = Math.Max(max, x);
                double lse = 0; foreach (var x in row) lse += Math.Exp(x - max);
                double expected = row[t[j]] - max - Math.Log(lse);
                Assert.True(Math.Abs(s.LogProbs[j] - expected) < 1e-12, $"{prompt} | {target} token {j}: {s.LogProbs[j]} vs {expected}");
                Assert.Equal(Generator.ArgMax(row) == t[j], s.Correct[j]);
            }
        }
    }

    [Fact]
    public void TargetScorer_SharedPromptThroughTheCache_EqualsOneForwardPerTarget()
    {
        using var model = Random(seed: 9);
        var scorer = new TargetScorer(new Transformer(model), Tok);
        string[] targets = ["French", "people speak the language of Rome", "x", "English German"];
        var together = scorer.Score("Michel Rocard is a native speaker of", targets);
        for (int i = 0; i < targets.Length; i++)
        {
            var alone = scorer.Score("Michel Rocard is a native speaker of", targets[i]);
            Num.AssertClose(together[i].LogProbs, alone.LogProbs, 1e-12, targets[i]);
            Assert.Equal(alone.Correct, together[i].Correct);
        }
    }

    [Fact]
    public void CounterFact_ConstructedCaseWithKnownAnswer()
    {
        var (model, logP) = ConstantLogits();
        using var _ = model;
        var tf = new Transformer(model);
        string best = Tok.Word(ArgMax(logP)), worst = Tok.Word(ArgMin(logP));
        // The model "knows" best (the argmax everywhere); the edit would ask for worst.
        var r = new EditRequest
        {
            Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = worst, TargetTrue = best,
            ParaphrasePrompts = ["Where Danielle Darrieux is from, people speak the language of"],
            NeighborhoodPrompts = ["Michel Rocard is a native speaker of", "The capital"], NeighborhoodAnswer = best,
        };
        var c = new CounterFactEvaluator(tf, Tok).Evaluate(r);
        var rw = Assert.Single(c.Rewrite);
        Assert.Equal(-logP[ArgMin(logP)], rw.NllNew, 12);
        Assert.Equal(-logP[ArgMax(logP)], rw.NllTrue, 12);
        Assert.True(rw.TrueWins && !rw.NewWins && rw.TrueTop1 && !rw.NewTop1);

        var s = CounterFactEvaluator.Summarize([c]);
        Assert.Equal((0.0, 0.0, 1.0), (s.EfficacySuccess, s.ParaphraseSuccess, s.NeighborhoodSuccess));
        Assert.Equal((0.0, 0.0, 1.0), (s.EfficacyTop1, s.ParaphraseTop1, s.NeighborhoodTop1));
        double diff = Math.Exp(logP.Min()) - Math.Exp(logP.Max());
        Assert.Equal(diff, s.EfficacyMagnitude, 12);
        Assert.Equal(-diff, s.NeighborhoodMagnitude, 12);
        Assert.Equal(0.0, s.Score);

        // After "editing" (swapping the targets) every success flips.
        var flipped = CounterFactEvaluator.Summarize([new CounterFactEvaluator(tf, Tok).Evaluate(r with { TargetNew = best, TargetTrue = worst, NeighborhoodAnswer = worst })]);
        Assert.Equal((1.0, 1.0, 0.0), (flipped.EfficacySuccess, flipped.ParaphraseSuccess, flipped.NeighborhoodSuccess));
    }

    [Fact]
    public void Summary_IsPerCaseMeanThenMeanOverCases()
    {
        static PromptScores P(double nNew, double nTrue, bool newTop1 = false) => new("p", nNew, nTrue, newTop1, !newTop1);
        // Case A: 2 paraphrases, one won; case B: 1 paraphrase, won. ROME: mean(0.5, 1) = 0.75, not 2/3.
        var a = new CounterFactCase("a", [P(1, 2, true)], [P(1, 2), P(2, 1)], []);
        var b = new CounterFactCase("b", [P(2, 1)], [P(1, 3)], [P(3, 1)]);
        var s = CounterFactEvaluator.Summarize([a, b]);
        Assert.Equal(2, s.Cases);
        Assert.Equal(0.5, s.EfficacySuccess);
        Assert.Equal(0.75, s.ParaphraseSuccess);
        Assert.Equal(1.0, s.NeighborhoodSuccess);   // only case b has neighbourhood prompts
        Assert.Equal(0.5, s.EfficacyTop1);
        Assert.Equal(3 / (1 / 0.5 + 1 / 0.75 + 1 / 1.0), s.Score, 12);
        Assert.Equal(Math.Exp(-3) - Math.Exp(-1) is var m ? -m : 0, s.NeighborhoodMagnitude, 12);
    }

    [Fact]
    public void Zsre_TokenAccuracyAndFactProbe_OnConstantLogits()
    {
        var (model, logP) = ConstantLogits();
        using var _ = model;
        var tf = new Transformer(model);
        string best = Tok.Word(ArgMax(logP)), worst = Tok.Word(ArgMin(logP));
        var r = new EditRequest
        {
            Subject = "Paris", Prompt = "What capital is {}?", TargetNew = $"{best} {best}", TargetTrue = worst,
            ParaphrasePrompts = ["What is Paris?", "The capital"], NeighborhoodPrompts = ["What is Rome?"], NeighborhoodAnswer = $"{best} {worst} {worst} {best}",
        };
        var z = new ZsreEvaluator(tf, Tok).Evaluate(r);
        Assert.Equal((1.0, 1.0, 0.5), (z.Efficacy, z.Generalization, z.Specificity));
        var sum = ZsreEvaluator.Summarize([z, z with { Efficacy = 0, Specificity = double.NaN }]);
        Assert.Equal((0.5, 1.0, 0.5), (sum.Efficacy, sum.Generalization, sum.Specificity));

        var probe = new FactProbe(tf, Tok);
        Assert.True(probe.Answers("The mother tongue of Danielle Darrieux is", best));
        Assert.False(probe.Answers("The mother tongue of Danielle Darrieux is", worst));
        Assert.True(probe.Answers(r));
        Assert.False(probe.Answers(r, $"{best} {worst}"));
        Assert.Equal(0.5, probe.Rate([("The", best), ("The", worst)]));
    }

    [Fact]
    public void NGramEntropy_KnownValues()
    {
        Assert.Equal(0.0, Fluency.NGramEntropy("x x x x x"));
        // bigrams (a b) x2, (b a) x1: H2 = 0.9183 bits; trigrams aba, bab: H3 = 1 bit.
        double h2 = -(2 / 3.0 * Math.Log2(2 / 3.0) + 1 / 3.0 * Math.Log2(1 / 3.0));
        Assert.Equal((2 / 3.0 * h2 + 4 / 3.0 * 1.0) / 2, Fluency.NGramEntropy("a b a b"), 12);
        // Punctuation marks are words of their own.
        Assert.Equal(Fluency.NGramEntropy("a , b"), Fluency.NGramEntropy("a, b"));
        Assert.Equal(0.0, Fluency.NGramEntropy(""));
    }

    [Fact]
    public void GenerationEntropy_IsSeededAndUsesThePrompts()
    {
        using var model = Random();
        var tf = new Transformer(model);
        var texts = Fluency.Generate(tf, Tok, ["The mother tongue", "Where"], maxLength: 12, seed: 3);
        Assert.StartsWith("The mother tongue", texts[0]);
        Assert.StartsWith("Where", texts[1]);
        Assert.Equal(texts, Fluency.Generate(tf, Tok, ["The mother tongue", "Where"], maxLength: 12, seed: 3));
        double h = Fluency.GenerationEntropy(tf, Tok, ["The mother tongue", "Where"], maxLength: 12, seed: 3);
        Assert.Equal(texts.Average(Fluency.NGramEntropy), h, 12);
        Assert.True(h > 0);
    }

    [Fact]
    public void SharedFactModel_KnowsTheTrueObjectsBeforeAnyEdit()
    {
        string dir = Paths.SharedOrSkip("models/cf5k-gpt2-d128-l6");
        string data = Path.Combine(Paths.SharedOrSkip("datasets/counterfact"), "counterfact-edit.json");
        // The fp16 checkpoint on the float32 SIMD backend: the fastest CPU path, and what users run.
        using var model = Model.Load(dir, new SimdBackend());
        var tok = TokenizerFactory.ForModel(dir, model.Config);
        var requests = DatasetReader.Load(data, limit: 20).Select(r => r with { ParaphrasePrompts = [], NeighborhoodPrompts = [] }).ToArray();
        var cases = new CounterFactEvaluator(new Transformer(model), tok).Evaluate(requests);
        double preEfficacy = cases.Average(c => c.Rewrite[0].TrueWins ? 1.0 : 0.0);
        double trueTop1 = cases.Average(c => c.Rewrite[0].TrueTop1 ? 1.0 : 0.0);
        Assert.True(preEfficacy >= 0.95, $"P(true) > P(new) on {preEfficacy:P0} of the first 20 rewrite prompts");
        Assert.True(trueTop1 >= 0.9, $"greedy answer is the true object on {trueTop1:P0}");
        Assert.Equal(0.0, CounterFactEvaluator.Summarize(cases).EfficacyTop1);
    }
}
