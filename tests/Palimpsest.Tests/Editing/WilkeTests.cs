using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Editing;

/// <summary>
/// WilKE: the layer with the smallest LA = ||ΔW_l||_F / ||W_l||_F wins, and the scan's LAs are
/// those of ROME run on its own at each layer (float64).
/// </summary>
public class WilkeTests
{
    // a 3-layer random model with the GPT-2 vocabulary, its tokenizer, and a random C per layer
    private static (ModelConfig C, ReferenceBackend B, Model M, Transformer Tf, ITextTokenizer Tok, double[][] Cms) Setup()
    {
        var c = EditingFixtures.Gpt2Vocab(3, 24, 2, 40);
        var b = new ReferenceBackend();
        var m = Model.FromHost(c, RandomWeights.Create(c, 17, 0.2), b);
        var cms = Enumerable.Range(0, c.Layers).Select(l => EditingFixtures.RandomSpd(c.DFf, 10 + l)).ToArray();
        return (c, b, m, new Transformer(m), TokenizerFactory.Gpt2(c), cms);
    }

    [Fact]
    public void The_argmin_layer_is_chosen_ties_go_to_the_lower_layer_and_nan_never_wins()
    {
        Assert.Equal(1, Wilke.ChooseLayer([0.3, 0.1, 0.2]));
        Assert.Equal(0, Wilke.ChooseLayer([0.2, 0.2, 0.5]));
        Assert.Equal(2, Wilke.ChooseLayer([double.NaN, 0.4, 0.05]));
        Assert.Throws<ArgumentException>(() => Wilke.ChooseLayer([double.NaN]));
    }

    [Fact]
    public void The_scan_matches_rome_at_each_layer_and_returns_the_chosen_layers_delta()
    {
        var (c, b, m, tf, tok, cms) = Setup();
        using var _b = b; using var _m = m;
        var hp = new RomeHparams { VLossLayer = 2, VNumGradSteps = 4, ContextTemplateLengthParams = [[4, 1]], VLr = 0.5 };
        var req = new EditRequest { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English", TargetTrue = "French" };

        var wilke = new Wilke(hp, 3, tok, l => cms[l]);
        var delta = wilke.ComputeDeltas(tf, [req]).Single();
        var scan = wilke.LastScan!;
        Assert.Equal([0, 1, 2], scan.Layers);
        Assert.Equal(Wilke.ChooseLayer(scan.La), scan.Chosen);
        Assert.Equal(scan.Chosen, delta.Layer);
        for (int l = 0; l < 3; l++)
        {
            var rome = new Rome(hp with { Layers = [l] }, tok, _ => cms[l]);
            var d = rome.ComputeDeltas(tf, [req]).Single();
            var w = new double[c.DFf * c.DModel]; b.ToHost(m.Params.Blocks[l].WDown, w);
            double norm = d.FrobeniusNorm();
            if (norm == 0)
            {
                // the last block: δ at the subject has no gradient there, and a zero delta is not eligible
                Assert.True(double.IsNaN(scan.La[l]), $"layer {l}: a zero delta should scan as NaN, got {scan.La[l]:R}");
                Assert.NotEqual(l, scan.Chosen);
                continue;
            }
            double la = norm / Math.Sqrt(w.Sum(x => x * x));
            Assert.True(Math.Abs(la - scan.La[l]) <= 1e-12 * la, $"layer {l}: LA {scan.La[l]:R} vs ROME alone {la:R}");
            if (l == scan.Chosen) { Assert.Equal(d.Left, delta.Left); Assert.Equal(d.Right, delta.Right); }
        }
    }

    [Fact]
    public void A_request_that_already_holds_gives_the_first_layers_zero_delta_instead_of_failing()
    {
        var (c, b, m, tf, tok, cms) = Setup();
        using var _b = b; using var _m = m;
        // an early-stop loss no target can exceed: v* stops before its first step at every layer
        var hp = new RomeHparams { VLossLayer = 2, VNumGradSteps = 4, ContextTemplateLengthParams = [[4, 1]], VLr = 0.5, VEarlyStopLoss = 1e9 };
        var req = new EditRequest { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English", TargetTrue = "French" };
        var wilke = new Wilke(hp, 3, tok, l => cms[l]);
        var delta = wilke.ComputeDeltas(tf, [req]).Single();
        Assert.All(wilke.LastScan!.La, la => Assert.True(double.IsNaN(la), $"LA {la:R}: every delta should be zero"));
        Assert.Equal(0, delta.Layer);
        Assert.Equal(0.0, delta.FrobeniusNorm());
    }
}
