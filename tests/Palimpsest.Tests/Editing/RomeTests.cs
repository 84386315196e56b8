using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Editing;

/// <summary>ROME on a small random model with the GPT-2 vocabulary, in float64.</summary>
public class RomeTests
{
    private static ModelConfig Config() => EditingFixtures.Gpt2Vocab(3, 24, 3, 40);

    private static double[] RandomSpd(int f, int seed) => EditingFixtures.RandomSpd(f, seed);

    private static readonly EditRequest Request = new()
    {
        Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English", TargetTrue = "French",
    };

    private static (ReferenceBackend B, Model M, Transformer Tf, Rome Rome, ITextTokenizer Tok, double[] C) Setup()
    {
        var c = Config();
        var b = new ReferenceBackend();
        var m = Model.FromHost(c, RandomWeights.Create(c, 17, 0.2), b);
        var tok = TokenizerFactory.Gpt2(c);
        var cm = RandomSpd(c.DFf, 3);
        var hp = new RomeHparams { Layers = [1], VLossLayer = 2, VNumGradSteps = 6, ContextTemplateLengthParams = [[5, 2], [7, 1]], VLr = 0.5 };
        return (b, m, new Transformer(m), new Rome(hp, tok, _ => cm), tok, cm);
    }

    [Fact]
    public void After_the_edit_the_prompt_key_maps_to_v_star_to_1e8()
    {
        var (b, m, tf, rome, _, _) = Setup();
        using var _b = b; using var _m = m;
        var delta = rome.ComputeDeltas(tf, [Request]).Single();
        var trace = rome.LastTrace!;
        m.ApplyDelta(delta);
        // the key at the edited layer is upstream of WDown, so it is unchanged by the edit
        var kp = rome.KeyAt(tf, Request.Prompt, Request.Subject, 1);
        Num.AssertClose(kp, trace.KPrompt, 1e-14, "prompt key after the edit");
        var v = Rome.MlpOutput(tf, 1, kp);
        Num.AssertClose(v, trace.VStar, 1e-8, "Ŵ k_p vs v*");
    }

    /// <summary>
    /// fact_token "last" (the reference's other lookup strategy: the prompt's last token, where a
    /// model that looks facts up at the end of the prompt keeps them): the lookup index, and an edit
    /// whose prompt key then maps to v* to 1e-8, as for subject_last. An unknown value is refused.
    /// </summary>
    [Fact]
    public void Fact_token_last_edits_at_the_prompts_last_token()
    {
        var c = Config();
        using var b = new ReferenceBackend();
        using var m = Model.FromHost(c, RandomWeights.Create(c, 17, 0.2), b);
        var tf = new Transformer(m);
        var tok = TokenizerFactory.Gpt2(c);
        var probes = new FactProbes(tok, "last");
        var (ids, idx) = probes.Encode(Request.Prompt, Request.Subject);
        Assert.Equal(ids.Length - 1, idx);
        Assert.True(new FactProbes(tok).Encode(Request.Prompt, Request.Subject).SubjectLast < idx, "subject_last lies before the prompt's end");

        var cm = RandomSpd(c.DFf, 3);
        var hp = new RomeHparams { Layers = [1], VLossLayer = 2, VNumGradSteps = 6, ContextTemplateLengthParams = [[5, 2]], VLr = 0.5, FactToken = "last" };
        var rome = new Rome(hp, tok, _ => cm);
        var delta = rome.ComputeDeltas(tf, [Request]).Single();
        var trace = rome.LastTrace!;
        Num.AssertClose(trace.KPrompt, probes.KeyAt(tf, Request.Prompt, Request.Subject, 1), 1e-14, "k_p is the key at the prompt's last token");
        m.ApplyDelta(delta);
        Num.AssertClose(Rome.MlpOutput(tf, 1, trace.KPrompt), trace.VStar, 1e-8, "Ŵ k_p vs v* (fact_token last)");

        var e = Assert.Throws<ArgumentException>(() => new Rome(hp with { FactToken = "subject_middle" }, tok, _ => cm));
        Assert.Contains("fact_token 'subject_middle'", e.Message);
    }

    /// <summary>
    /// The rewriting prompts of v*/z* (prompt + target tokens but the last): with fact_token "last"
    /// δ sits at the prompt's last token, where the edit acts, not on the last target token (the
    /// reference's −1 on the whole text, which left MEMIT's multi-token edits at 0.65 efficacy on
    /// facts-d128-l5); subject tokens are the same either way.
    /// </summary>
    [Fact]
    public void Rewrite_prompts_put_the_last_fact_token_at_the_prompts_end()
    {
        var tok = TokenizerFactory.Gpt2(Config());
        var last = new FactProbes(tok, "last");
        var (promptIds, promptEnd) = last.Encode(Request.Prompt, Request.Subject);
        var (ids, idx) = last.EncodeRewrite(Request.Prompt, Request.Subject, " Paris Saint");
        Assert.Equal(promptEnd, idx);
        Assert.True(ids.Length > promptIds.Length + 1, "the target's tokens follow the prompt");
        Assert.Equal(promptIds, ids.Take(promptIds.Length));
        var (bareIds, bareIdx) = last.EncodeRewrite(Request.Prompt, Request.Subject, "");
        Assert.Equal(promptIds, bareIds);
        Assert.Equal(promptEnd, bareIdx);

        var subject = new FactProbes(tok);
        var (sIds, sIdx) = subject.EncodeRewrite(Request.Prompt, Request.Subject, " Paris Saint");
        Assert.Equal(ids, sIds);
        Assert.Equal(subject.Encode(Request.Prompt, Request.Subject).SubjectLast, sIdx);
    }

    /// <summary>
    /// The k̄ templates' keys read in packed forwards (FactProbes.KeysAt) against one forward per
    /// template, with a context so short that the templates need several packs; and the MLP output
    /// computed on the backend against the same product on the host.
    /// </summary>
    [Fact]
    public void Packed_template_keys_and_backend_mlp_outputs_equal_the_one_by_one_ones()
    {
        var c = Config() with { MaxPositions = 24 };
        using var b = new ReferenceBackend();
        using var m = Model.FromHost(c, RandomWeights.Create(c, 17, 0.2), b);
        var tf = new Transformer(m);
        var probes = new FactProbes(TokenizerFactory.Gpt2(c));
        string[] templates = ["{}", "I said. {} was", "Yesterday, we saw that {} plays the", "The {} of", "So {}"];
        var packed = probes.KeysAt(tf, templates, "Danielle Darrieux", 1);
        Assert.Equal(templates.Length, packed.Length);
        for (int i = 0; i < templates.Length; i++)
            Num.AssertClose(packed[i], probes.KeyAt(tf, templates[i], "Danielle Darrieux", 1), 1e-12, $"template {i} key, packed vs alone");

        var v = FactProbes.MlpOutput(tf, 1, packed[2]);
        var w = new double[c.DFf * c.DModel]; b.ToHost(m.Params.Blocks[1].WDown, w);
        var bias = new double[c.DModel]; b.ToHost(m.Params.Blocks[1].BDown!, bias);
        var expected = bias.Select((x, j) => x + Enumerable.Range(0, c.DFf).Sum(i => packed[2][i] * w[i * c.DModel + j])).ToArray();
        Num.AssertClose(v, expected, 1e-12, "k · WDown + b on the backend vs the host");
    }

    [Fact]
    public void Rank_one_update_equals_the_closed_form_from_a_dense_inverse()
    {
        var (b, m, tf, rome, _, cm) = Setup();
        using var _b = b; using var _m = m;
        var delta = rome.ComputeDeltas(tf, [Request]).Single();
        var t = rome.LastTrace!;
        int f = m.Config.DFf, d = m.Config.DModel;
        var C = Matrix<double>.Build.DenseOfRowMajor(f, f, cm);
        var kbar = Vector<double>.Build.DenseOfArray(t.KBar);
        var kp = Vector<double>.Build.DenseOfArray(t.KPrompt);
        var cinvK = C.Inverse() * kbar;                   // u up to scale
        var w = new double[f * d]; b.ToHost(m.Params.Blocks[1].WDown, w);
        var W = Matrix<double>.Build.DenseOfRowMajor(f, d, w); // canonical [f, d]: v = k·W + b
        var bias = new double[d]; b.ToHost(m.Params.Blocks[1].BDown!, bias);
        var v = W.TransposeThisAndMultiply(kp) + Vector<double>.Build.DenseOfArray(bias);
        var r = (Vector<double>.Build.DenseOfArray(t.VStar) - v) / cinvK.DotProduct(kp);
        var expected = cinvK.OuterProduct(r);             // ΔW [f, d] = C⁻¹k̄ ⊗ (v* − W k_p) / ((C⁻¹k̄)ᵀ k_p)
        Num.AssertClose(delta.ToDense(), expected.ToRowMajorArray(), 1e-10, "ΔW");
    }

    [Fact]
    public void The_v_star_optimisation_lowers_the_target_loss_and_respects_the_clamp()
    {
        var (b, m, tf, rome, tok, _) = Setup();
        using var _b = b; using var _m = m;
        var target = tok.Encode(" English");
        double Nll()
        {
            var p = tok.Encode("The mother tongue of Danielle Darrieux is");
            using var r = tf.Forward(p.Concat(target).ToArray(), new ForwardOptions { LogitsFrom = p.Length - 1 });
            var tg = Enumerable.Range(0, target.Length + 1).Select(j => j < target.Length ? target[j] : -1).ToArray();
            return b.CrossEntropy(r.Logits, tg, null);
        }
        double before = Nll();
        var delta = rome.ComputeDeltas(tf, [Request]).Single();
        var t = rome.LastTrace!;
        double dn = Math.Sqrt(t.VStar.Zip(t.V0, (x, y) => (x - y) * (x - y)).Sum()), v0n = Math.Sqrt(t.V0.Sum(x => x * x));
        Assert.True(dn <= rome.Hparams.ClampNormFactor * v0n * (1 + 1e-12), $"||δ|| {dn} exceeds clamp {rome.Hparams.ClampNormFactor} x {v0n}");
        m.ApplyDelta(delta);
        double after = Nll();
        Assert.True(t.FinalLoss < t.InitialLoss, $"v* loss {t.InitialLoss:F3} -> {t.FinalLoss:F3}");
        Assert.True(after < before - 0.2, $"NLL of the target {before:F3} -> {after:F3}");
    }

    [Fact]
    public void Context_templates_are_reproducible_and_shaped_like_the_reference()
    {
        var (b, m, tf, _, tok, _) = Setup();
        using var _b = b; using var _m = m;
        var a = ContextTemplates.Generate(tf, tok, [[5, 3], [10, 2]], seed: 4);
        var c = ContextTemplates.Generate(tf, tok, [[5, 3], [10, 2]], seed: 4);
        var other = ContextTemplates.Generate(tf, tok, [[5, 3], [10, 2]], seed: 5);
        Assert.Equal(a, c);
        Assert.NotEqual(a, other);
        Assert.Equal(6, a.Count);
        Assert.Equal("{}", a[0]);
        Assert.All(a.Skip(1), t => { Assert.EndsWith(". {}", t); Assert.Equal(1, t.Split("{}").Length - 1); });
    }

    [Fact]
    public void Subject_last_token_follows_rome_conventions()
    {
        var tok = TokenizerFactory.Gpt2(Config());
        // "The mother tongue of Danielle Darrieux is" = The, mother, tongue, of, ĠDan, ielle, ĠDar, rieux, Ġis
        Assert.Equal(7, SubjectTokens.LastIndex(tok, "The mother tongue of {} is", "Danielle Darrieux"));
        Assert.Equal(4, SubjectTokens.FirstIndex(tok, "The mother tongue of {} is", "Danielle Darrieux"));
        // at the start there is no prefix, so the subject is tokenised without a leading space
        int n = tok.Encode("Danielle Darrieux").Length;
        Assert.Equal(n - 1, SubjectTokens.LastIndex(tok, "{} is a", "Danielle Darrieux"));
        Assert.Equal(0, SubjectTokens.FirstIndex(tok, "{} is a", "Danielle Darrieux"));
        Assert.Throws<ArgumentException>(() => SubjectTokens.LastIndex(tok, "The tongue of{} is", "X"));
    }

    [Fact]
    public void Bad_requests_are_refused_with_the_field()
    {
        var (b, m, tf, rome, _, _) = Setup();
        using var _b = b; using var _m = m;
        var e = Assert.Throws<ArgumentException>(() => rome.ComputeDeltas(tf, [Request with { Prompt = "no subject here" }]));
        Assert.Contains("'prompt'", e.Message);
        Assert.Throws<ArgumentException>(() => rome.ComputeDeltas(tf, [Request, Request]));
    }
}
