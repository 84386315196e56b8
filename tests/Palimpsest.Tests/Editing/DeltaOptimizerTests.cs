using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Runtime;

namespace Palimpsest.Tests.Editing;

/// <summary>The packed rewriting loss of the δ optimisation against one forward per prompt (float64).</summary>
public class DeltaOptimizerTests
{
    [Theory]
    [InlineData(19)] // the context: 30 tokens in two forwards (18 + 12)
    [InlineData(8)]  // five forwards, none past 8 tokens
    public void Packed_rewrite_loss_and_gradient_equal_the_per_prompt_mean(int maxTokens)
    {
        var c = SmallConfigs.Get("neox-sequential");
        using var b = new ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 5, 0.3), b);
        var tf = new Transformer(model);
        var rng = new Random(2);
        // prompts of different lengths and target counts (1, 2 or 3 targets: the mean is per prompt, then over prompts)
        var prompts = Enumerable.Range(0, 7).Select(i =>
        {
            int n = 3 + i % 4, k = 1 + i % 3;
            var ids = Enumerable.Range(0, n).Select(_ => rng.Next(c.Vocab)).ToArray();
            return new RewritePrompt(ids, i % 2, Enumerable.Range(n - k, k).Select(r => (r, rng.Next(c.Vocab))).ToArray());
        }).ToList();
        using var delta = b.FromHost(Enumerable.Range(0, c.DModel).Select(_ => rng.NextDouble() - 0.5).ToArray(), c.DModel);
        const int layer = 1;

        var packs = DeltaOptimizer.Pack(prompts, maxTokens, layer, InterventionSite.MlpOutput, delta);
        Assert.All(packs, p => Assert.True(p.Ids.Length <= maxTokens));
        Assert.Equal(maxTokens == 19 ? 2 : 5, packs.Count);
        using var grad = b.Zeros(c.DModel);
        double nll = DeltaOptimizer.RewriteNll(tf, packs, grad);

        double expected = 0;
        using var expectedGrad = b.Zeros(c.DModel);
        foreach (var p in prompts)
        {
            using var r = tf.Forward(p.Ids, new ForwardOptions
            {
                KeepForBackward = true, Interventions = [new Intervention(layer, InterventionSite.MlpOutput, p.Lookup, delta)],
            });
            var targets = Enumerable.Repeat(-1, p.Ids.Length).ToArray();
            foreach (var (row, tok) in p.Targets) targets[row] = tok;
            using var dl = b.Zeros(r.Logits.Shape);
            expected += b.CrossEntropy(r.Logits, targets, dl, 1.0 / prompts.Count) / prompts.Count;
            tf.Backward(r, dl, [expectedGrad]);
        }
        Assert.True(Math.Abs(nll - expected) <= 1e-12 * expected, $"packed NLL {nll:R} vs per prompt {expected:R}");
        var g = new double[c.DModel]; b.ToHost(grad, g);
        var e = new double[c.DModel]; b.ToHost(expectedGrad, e);
        Num.AssertClose(g, e, 1e-10, "d NLL / d δ");
    }

    /// <summary>
    /// The KL prompt packed after the rewriting prompts (one forward per step for everything):
    /// its row lands in the last pack when it fits, or in a pack of its own; the packed step's
    /// NLL, KL and δ gradient equal a separate forward of the KL prompt added to the rewrite loss.
    /// </summary>
    [Theory]
    [InlineData(19, 2)]  // prompts of 5, 6, 7 | 5 tokens: the 6-token KL prompt joins the second pack
    [InlineData(14, 3)]  // 5, 6 | 7, 5 tokens: 12 + 6 > 14, so the KL prompt gets a pack of its own
    public void Packed_kl_term_equals_a_separate_kl_forward(int maxTokens, int expectedPacks)
    {
        var c = SmallConfigs.Get("gpt2");
        using var b = new ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 6, 0.3), b);
        var tf = new Transformer(model);
        var rng = new Random(3);
        var prompts = Enumerable.Range(0, 4).Select(i =>
        {
            int n = 5 + i % 3;
            var ids = Enumerable.Range(0, n).Select(_ => rng.Next(c.Vocab)).ToArray();
            return new RewritePrompt(ids, 1, [(n - 2, rng.Next(c.Vocab)), (n - 1, rng.Next(c.Vocab))]);
        }).ToList();
        var klIds = Enumerable.Range(0, 6).Select(_ => rng.Next(c.Vocab)).ToArray();
        const int klLookup = 3, layer = 1;
        const double factor = 0.0625;
        using var delta = b.FromHost(Enumerable.Range(0, c.DModel).Select(_ => rng.NextDouble() - 0.5).ToArray(), c.DModel);
        // P₀: some other distribution over the vocabulary, so that the KL is not 0
        var refHost = Enumerable.Range(0, c.Vocab).Select(_ => rng.NextDouble() * 4).ToArray();
        using var refLogits = b.FromHost(refHost, 1, c.Vocab);

        var packs = DeltaOptimizer.Pack(prompts, maxTokens, layer, InterventionSite.MlpOutput, delta, (klIds, klLookup));
        Assert.Equal(expectedPacks, packs.Count);
        var holder = Assert.Single(packs, p => p.KlRow >= 0);
        Assert.Same(packs[^1], holder);
        Assert.Equal(holder.Ids.Length - klIds.Length + klLookup, holder.Rows[holder.KlRow]);
        Assert.All(holder.Losses, l => Assert.Equal(-1, l.Targets[holder.KlRow]));

        using var kl = new DeltaOptimizer.KlTerm(factor) { RefLogProbs = b.Zeros(1, c.Vocab) };
        b.LogSoftmax(refLogits, kl.RefLogProbs!);
        using var grad = b.Zeros(c.DModel);
        var (nll, klLoss) = DeltaOptimizer.StepLoss(tf, packs, grad, 0, null, kl);

        // expected: the rewrite loss alone, plus one forward of the KL prompt
        using var expectedGrad = b.Zeros(c.DModel);
        double expectedNll = DeltaOptimizer.RewriteNll(tf, DeltaOptimizer.Pack(prompts, maxTokens, layer, InterventionSite.MlpOutput, delta), expectedGrad);
        double expectedKl;
        using (var r = tf.Forward(klIds, new ForwardOptions
        {
            LogitsFrom = klLookup, KeepForBackward = true,
            Interventions = [new Intervention(layer, InterventionSite.MlpOutput, klLookup, delta)],
        }))
        {
            using var row = b.Zeros(1, c.Vocab);
            b.CopyRows(r.Logits, 0, row, 0, 1);
            using var dRow = b.Zeros(1, c.Vocab);
            expectedKl = factor * b.KlDivergence(row, kl.RefLogProbs!, dRow, factor);
            using var dl = b.Zeros(r.Logits.Shape);
            b.CopyRows(dRow, 0, dl, 0, 1);
            tf.Backward(r, dl, [expectedGrad]);
        }
        Assert.True(expectedKl > 1e-3, $"the KL term should not vanish ({expectedKl})");
        Assert.True(Math.Abs(nll - expectedNll) <= 1e-12 * expectedNll, $"packed NLL {nll:R} vs {expectedNll:R}");
        Assert.True(Math.Abs(klLoss - expectedKl) <= 1e-12 * expectedKl, $"packed KL {klLoss:R} vs separate {expectedKl:R}");
        var g = new double[c.DModel]; b.ToHost(grad, g);
        var e = new double[c.DModel]; b.ToHost(expectedGrad, e);
        Num.AssertClose(g, e, 1e-10, "d (NLL + KL) / d δ, packed vs separate");
    }

    public static TheoryData<string, string, InterventionSite> ReuseCases()
    {
        var d = new TheoryData<string, string, InterventionSite>();
        foreach (var backend in TestBackends.Cpu)
        {
            d.Add("gpt2", backend, InterventionSite.MlpOutput);   // ROME's v*
            d.Add("llama", backend, InterventionSite.BlockOutput); // MEMIT's z*
            d.Add("gptj", backend, InterventionSite.ResidualIn);
        }
        return d;
    }

    /// <summary>
    /// The optimisation resuming every step's forwards at the edited block (the default) against the
    /// naive one running all blocks each step: the same δ, step count and losses, bit for bit, with
    /// the prompts in two packs and every step taken (no early stop), at layer 2 of a 4-layer model.
    /// </summary>
    [Theory, MemberData(nameof(ReuseCases))]
    public void Resuming_at_the_edited_layer_gives_the_same_delta_bitwise(string arch, string backend, InterventionSite site)
    {
        using var b = TestBackends.Create(backend);
        using var model = Model.Load(Paths.Fixture(arch), b);
        var c = model.Config;
        var tf = new Transformer(model);
        var rng = new Random(9);
        // 7 prompts of 8..11 tokens: 66 > 64 positions, so two packs
        var (prompts, kl) = RandomPrompts(c.Vocab, rng);
        var objective = new DeltaObjective(Steps: 6, Lr: 0.5, WeightDecay: 0.5, ClampNormFactor: 4, KlFactor: 0.0625, EarlyStopLoss: 0);
        const int layer = 2;
        using (var probe = b.Zeros(c.DModel)) Assert.Equal(2, DeltaOptimizer.Pack(prompts, c.MaxPositions, layer, site, probe).Count);

        var fast = DeltaOptimizer.Optimise(tf, layer, site, prompts, kl, 2.0, objective, reuseBelow: true);
        var naive = DeltaOptimizer.Optimise(tf, layer, site, prompts, kl, 2.0, objective, reuseBelow: false);
        Assert.Equal(objective.Steps - 1, naive.Steps);
        Assert.Equal(naive.Steps, fast.Steps);
        Assert.True(naive.InitialLoss.Equals(fast.InitialLoss), $"initial loss {fast.InitialLoss:R} vs {naive.InitialLoss:R}");
        Assert.True(naive.FinalLoss.Equals(fast.FinalLoss), $"final loss {fast.FinalLoss:R} vs {naive.FinalLoss:R}");
        ResumeTests.AssertBitwise(fast.Delta, naive.Delta, $"{arch} {backend} {site} δ");
        Assert.True(naive.Delta.Any(x => x != 0) && naive.FinalLoss != naive.InitialLoss, "the optimisation should have moved δ");
    }

    /// <summary>
    /// 7 rewriting prompts of 8..11 random tokens (66 in all), lookup rows 2..4, the last 1 or 2 rows
    /// as targets, and a 6-token KL prompt with its lookup at row 3.
    /// </summary>
    internal static (List<RewritePrompt> Prompts, (int[] Ids, int Lookup) Kl) RandomPrompts(int vocab, Random rng)
    {
        var prompts = Enumerable.Range(0, 7).Select(i =>
        {
            int n = 8 + i % 4, k = 1 + i % 2;
            var ids = Enumerable.Range(0, n).Select(_ => rng.Next(vocab)).ToArray();
            return new RewritePrompt(ids, 2 + i % 3, Enumerable.Range(n - k, k).Select(r => (r, rng.Next(vocab))).ToArray());
        }).ToList();
        return (prompts, (Enumerable.Range(0, 6).Select(_ => rng.Next(vocab)).ToArray(), 3));
    }

    [Fact]
    public void A_target_row_outside_its_prompt_is_refused()
    {
        var c = SmallConfigs.Get("gpt2");
        using var b = new ReferenceBackend();
        using var delta = b.Zeros(c.DModel);
        var e = Assert.Throws<ArgumentException>(() =>
            DeltaOptimizer.Pack([new RewritePrompt([1, 2, 3], 1, [(3, 4)])], c.MaxPositions, 0, InterventionSite.MlpOutput, delta));
        Assert.Contains("outside", e.Message);
    }
}

/// <summary>ROME's rewriting prompts: one per template with the target on its rows (linear) is the loss of one prompt per target prefix (quadratic).</summary>
public class RewritePromptFormTests
{
    [Fact]
    public void A_multi_token_target_on_its_rows_optimises_as_one_prompt_per_prefix()
    {
        using var s = new EditingFixtures.Small();
        var probes = new FactProbes(s.Tok, "subject_last");
        var target = s.Tok.Encode(" piano keyboard player");
        Assert.True(target.Length >= 3);
        string[] templates = ["{}", "Once upon a time. {}"];
        const string prompt = "{} plays the", subject = "Toko Yasuda";
        var perPrefix = new List<RewritePrompt>();
        var onRows = new List<RewritePrompt>();
        foreach (var t in templates)
        {
            for (int i = 0; i < target.Length; i++)
            {
                var (ids, idx) = probes.EncodeRewrite(t.Replace("{}", prompt), subject, s.Tok.Decode(target.AsSpan(0, i)));
                perPrefix.Add(new RewritePrompt(ids, idx, [(ids.Length - 1, target[i])]));
            }
            var (all, at) = probes.EncodeRewrite(t.Replace("{}", prompt), subject, s.Tok.Decode(target.AsSpan(0, target.Length - 1)));
            onRows.Add(new RewritePrompt(all, at, Enumerable.Range(0, target.Length).Select(j => (all.Length - target.Length + j, target[j])).ToArray()));
        }
        var kl = probes.Encode("{} is a", subject);
        var o = new DeltaObjective(Steps: 4, Lr: 0.5, WeightDecay: 0.5, ClampNormFactor: 4, KlFactor: 0.0625, EarlyStopLoss: 0);
        var a = DeltaOptimizer.Optimise(s.Tf, 2, Palimpsest.Runtime.InterventionSite.MlpOutput, perPrefix, kl, 3.0, o);
        var b = DeltaOptimizer.Optimise(s.Tf, 2, Palimpsest.Runtime.InterventionSite.MlpOutput, onRows, kl, 3.0, o);
        Assert.Equal(a.InitialLoss, b.InitialLoss, 12);
        Assert.Equal(a.FinalLoss, b.FinalLoss, 10);
        Num.AssertClose(b.Delta, a.Delta, 1e-9, "δ after 3 Adam steps");
    }
}
