using Palimpsest.Backends;
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

    [Theory]
    [InlineData("cpu-f64")]
    [InlineData("cpu-f32")]
    public void Scanning_layers_in_parallel_gives_the_sequential_scan_bit_for_bit(string backend)
    {
        var c = EditingFixtures.Gpt2Vocab(4, 24, 2, 40);
        using IBackend b = backend == "cpu-f64" ? new ReferenceBackend() : new SimdBackend(3);
        using var m = Model.FromHost(c, RandomWeights.Create(c, 23, 0.2), b);
        using var tf = new Transformer(m);
        var tok = TokenizerFactory.Gpt2(c);
        var cms = Enumerable.Range(0, c.Layers).Select(l => EditingFixtures.RandomSpd(c.DFf, 30 + l)).ToArray();
        var hp = new RomeHparams { VLossLayer = 3, VNumGradSteps = 5, ContextTemplateLengthParams = [[4, 2]], VLr = 0.5 };
        var req = new EditRequest { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English", TargetTrue = "French" };

        var one = new Wilke(hp, 4, tok, l => cms[l]) { MaxParallelLayers = 1 };
        var all = new Wilke(hp, 4, tok, l => cms[l]) { MaxParallelLayers = 4 };
        var d1 = one.ComputeDeltas(tf, [req]).Single();
        var d4 = all.ComputeDeltas(tf, [req]).Single();
        // more than one layer has a delta, so the choice is a real one
        Assert.True(one.LastScan!.La.Count(x => !double.IsNaN(x)) >= 2, $"LA {string.Join(", ", one.LastScan.La)}");
        Assert.Equal(one.LastScan.La, all.LastScan!.La);
        Assert.Equal(one.LastScan.Chosen, all.LastScan.Chosen);
        Assert.Equal(d1.Layer, d4.Layer);
        Assert.Equal(d1.Left, d4.Left);
        Assert.Equal(d1.Right, d4.Right);
        Assert.Equal(one.LastRomeTrace!.VStar, all.LastRomeTrace!.VStar);
        // the chosen layer's trace is that layer's ROME
        var rome = new Rome(hp with { Layers = [d1.Layer] }, tok, _ => cms[d1.Layer]);
        rome.ComputeDeltas(tf, [req]);
        Assert.Equal(rome.LastTrace!.VStar, one.LastRomeTrace.VStar);
    }
}
