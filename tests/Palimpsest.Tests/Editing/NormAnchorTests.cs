using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Editing;

/// <summary>Norm-Anchor Scaling: the rescaling, the trimmed mean, and ROME / MEMIT / AlphaEdit values at the anchor's norm.</summary>
public class NormAnchorTests
{
    private static readonly EditRequest[] Requests = EditingFixtures.Requests[..2];

    private static double Norm(IEnumerable<double> v) => Math.Sqrt(v.Sum(x => x * x));

    [Fact]
    public void Values_get_the_anchor_norm_unless_more_than_twice_it()
    {
        double[] v0 = [1, 0, 0], vStar = [3, 4, 0];                       // ‖v*‖ = 5
        var scaled = NormAnchor.Rescale(vStar, v0, 4, out bool skipped);
        Assert.False(skipped);
        Assert.Equal(4, Norm(scaled), 9);
        Assert.Equal(4.0 / 3.0, scaled[1] / scaled[0], 12); // same direction
        var kept = NormAnchor.Rescale(vStar, v0, 2.4, out skipped);      // 5 > 2 · 2.4: skipped
        Assert.True(skipped);
        Assert.Equal(v0, kept);
        // the mean without the largest ⌊5 % · n⌋: 40 values drop 2
        var values = Enumerable.Range(1, 40).Select(i => (double)i).Reverse().ToList();
        Assert.Equal(Enumerable.Range(1, 38).Average(), NormAnchor.UpperTrimmedMean(values), 12);
        Assert.Equal(2.5, NormAnchor.UpperTrimmedMean([1, 2, 3, 4]), 12);  // ⌊0.2⌋ = 0: nothing dropped
    }

    [Fact]
    public void Memit_aims_the_block_output_at_the_residual_before_the_mlp_plus_an_anchored_value()
    {
        using var s = new EditingFixtures.Small();
        var (m, tf, tok) = (s.Model, s.Tf, s.Tok);
        var cm = EditingFixtures.RandomSpd(m.Config.DFf, 7);
        var hp = new MemitHparams { Layers = [1], VLossLayer = 3, VNumGradSteps = 5, Mom2UpdateWeight = 4, NormAnchor = true, NasRestart = 2 };
        var memit = new Memit(hp, tok, _ => cm);
        var refused = Assert.Throws<ArgumentException>(() => memit.ComputeDeltas(tf, Requests)); // no pool, no nas_norm: one clear refusal
        Assert.Contains("norm_anchor: MEMIT needs requests", refused.Message);
        memit.AnchorPool = Requests;
        memit.ComputeDeltas(tf, Requests);
        double anchor = memit.AnchorNorm!.Value;
        Assert.True(anchor > 0);
        // one layer: R = z* − z₀, so v* = R + v₀ must have the anchor's norm (or be v₀, skipped)
        var probes = new FactProbes(tok, hp.FactToken);
        var (_, _, R) = memit.LastSolves![0];
        for (int i = 0; i < Requests.Length; i++)
        {
            var v0 = FactProbes.MlpOutput(tf, 1, probes.KeyAt(tf, Requests[i].Prompt, Requests[i].Subject, 1));
            var vStar = R.Column(i).ToArray().Zip(v0, (r, v) => r + v).ToArray();
            Assert.Equal(Norm(R.Column(i)) == 0 ? Norm(v0) : anchor, Norm(vStar), 9); // skipped: z* = z₀
        }
        // nas_norm given: that anchor, nothing measured
        var fixedAnchor = new Memit(hp with { NasNorm = 3.5 }, tok, _ => cm);
        fixedAnchor.ComputeDeltas(tf, Requests.Take(1).ToArray());
        Assert.Equal(3.5, fixedAnchor.AnchorNorm);
        // AlphaEdit measures MEMIT's anchor the same way, and its refusal names AlphaEdit (MEMIT runs inside it)
        var ae = new AlphaEdit(new AlphaEditHparams { Layers = [1], VLossLayer = 3, VNumGradSteps = 5, NormAnchor = true, NasRestart = 2 }, tok, _ => cm);
        var aeRefused = Assert.Throws<ArgumentException>(() => ae.ComputeDeltas(tf, Requests));
        Assert.Contains("norm_anchor: AlphaEdit needs requests", aeRefused.Message);
        ae.AnchorPool = Requests;
        ae.ComputeDeltas(tf, Requests);
        Assert.Equal(anchor, ae.AnchorNorm!.Value, 12);
    }

    [Fact]
    public void Rome_rescales_its_v_star_to_the_anchor()
    {
        using var s = new EditingFixtures.Small();
        var (m, tf, tok) = (s.Model, s.Tf, s.Tok);
        var cm = EditingFixtures.RandomSpd(m.Config.DFf, 3);
        var hp = new RomeHparams { Layers = [1], VLossLayer = 3, VNumGradSteps = 5, ContextTemplateLengthParams = [[3, 2]], NormAnchor = true, NasNorm = 2.25 };
        var rome = new Rome(hp, tok, _ => cm);
        rome.ComputeDeltas(tf, Requests.Take(1).ToArray());
        var t = rome.LastTrace!;
        Assert.Equal(rome.AnchorSkipped == 1 ? Norm(t.V0) : 2.25, Norm(t.VStar), 9);
        // off: the JSON the journal records is what it was before NAS existed
        Assert.DoesNotContain("nas", new RomeHparams().ToJson());
        Assert.Contains("\"norm_anchor\":true", hp.ToJson());
        Assert.True(RomeHparams.FromJson("""{"norm_anchor": true, "nas_restart": 10}""").NormAnchor);
    }
}
