using Palimpsest.Analysis;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Analysis;

public class CausalTraceTests
{
    private static (ReferenceBackend, Model, ITextTokenizer) Setup()
    {
        var c = new ModelConfig
        {
            Arch = Architecture.Gpt2, Layers = 3, DModel = 16, Heads = 2, KvHeads = 2, HeadDim = 8, DFf = 24, Vocab = 50257,
            MaxPositions = 32, NormEps = 1e-5, Norm = NormKind.LayerNorm, Act = Activation.GeluTanh, LearnedPositions = true,
            QkvBias = true, AttnOutBias = true, MlpBias = true, TiedHead = true, EosTokenId = 50256,
        };
        var b = new ReferenceBackend();
        return (b, Model.FromHost(c, RandomWeights.Create(c, 5, 0.3), b), TokenizerFactory.Gpt2(c));
    }

    private const string Prompt = "The mother tongue of Danielle Darrieux is";

    [Fact]
    public void Restoring_states_obeys_causality_and_the_last_state_restores_everything()
    {
        var (b, m, tok) = Setup();
        using var _b = b; using var _m = m;
        var tracer = new CausalTracer(new Transformer(m), tok, noiseStd: 0.5, samples: 2, window: 2);
        var r = tracer.Trace(Prompt, "Danielle Darrieux", TraceKind.Hidden);
        int T = r.Tokens.Length, L = r.Scores.GetLength(1);
        Assert.Equal((4, 7), (r.SubjectFirst, r.SubjectLast));
        Assert.True(Math.Abs(r.HighScore - r.LowScore) > 1e-6, "the noise must change p(answer) for the test to mean anything");
        // the last token's output of the last block decides the logits: restoring it restores p exactly
        Assert.Equal(r.HighScore, r.Scores[T - 1, L - 1], 12);
        // tokens before the subject are not corrupted (causal attention), so restoring them changes nothing
        for (int t = 0; t < r.SubjectFirst; t++)
            for (int l = 0; l < L; l++) Assert.Equal(r.LowScore, r.Scores[t, l], 12);
        foreach (var kind in new[] { TraceKind.Mlp, TraceKind.Attn })
        {
            var k = tracer.Trace(Prompt, "Danielle Darrieux", kind);
            for (int t = 0; t < k.SubjectFirst; t++) for (int l = 0; l < L; l++) Assert.Equal(k.LowScore, k.Scores[t, l], 12);
        }
    }

    [Fact]
    public void Replacing_a_block_output_with_the_clean_one_gives_the_clean_logits()
    {
        var (b, m, tok) = Setup();
        using var _b = b; using var _m = m;
        var tf = new Transformer(m);
        var ids = tok.Encode(Prompt);
        int d = m.Config.DModel, T = ids.Length;
        using var clean = tf.Forward(ids, new ForwardOptions { CaptureHidden = true });
        var h1 = new double[T * d]; b.ToHost(clean.Hidden![2], h1); // output of block 1
        var ivs = new List<Intervention>();
        using var noise = b.FromHost(Enumerable.Range(0, d).Select(i => Math.Sin(i) * 2).ToArray(), d);
        ivs.Add(new Intervention(0, InterventionSite.ResidualIn, 5, noise));
        var rows = Enumerable.Range(0, T).Select(t => b.FromHost(h1.AsSpan(t * d, d), d)).ToList();
        for (int t = 0; t < T; t++) ivs.Add(new Intervention(1, InterventionSite.BlockOutput, t, rows[t], Replace: true));
        using var patched = tf.Forward(ids, new ForwardOptions { Interventions = ivs });
        var a = new double[clean.Logits.Length]; b.ToHost(clean.Logits, a);
        var p = new double[a.Length]; b.ToHost(patched.Logits, p);
        Num.AssertClose(p, a, 1e-14, "patched logits");
        foreach (var r in rows) r.Dispose();
        Assert.Throws<ArgumentException>(() => tf.Forward(ids, new ForwardOptions { Interventions = ivs, KeepForBackward = true }));
    }

    [Fact]
    public void Averages_bin_tokens_by_roles_around_the_subject()
    {
        var scores = new double[6, 2];
        for (int t = 0; t < 6; t++) { scores[t, 0] = t; scores[t, 1] = 10 * t; }
        // tokens: 0 before, 1 first subject, 2 middle, 3 last subject, 4 first after, 5 last token
        var tr = new TraceResult("p", "s", "a", 0, ["a", "b", "c", "d", "e", "f"], 1, 3, TraceKind.Hidden, 1, 0.5, scores);
        var (eff, names) = CausalTracer.Average([tr]);
        Assert.Equal(6, names.Length);
        Assert.Equal(1 - 0.5, eff[0, 0], 12);
        Assert.Equal(2 - 0.5, eff[1, 0], 12);
        Assert.Equal(30 - 0.5, eff[2, 1], 12);
        Assert.Equal(4 - 0.5, eff[3, 0], 12);
        Assert.True(double.IsNaN(eff[4, 0])); // no "further" token here
        Assert.Equal(50 - 0.5, eff[5, 1], 12);
    }
}
