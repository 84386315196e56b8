using Palimpsest.Analysis;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Editing;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Analysis;

/// <summary>
/// The interference monitor's forecast against what the edit then does (float64): each bank fact's
/// predicted drift ΔW k_j is the measured change of its MLP output once the edit is applied, the
/// edit's own change is v* − W k_p, and P is the rank-one ratio (u · k_j) / (u · k_p).
/// </summary>
public class InterferenceMonitorTests
{
    private static readonly EditRequest Request = new()
    {
        Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English", TargetTrue = "French",
    };

    [Fact]
    public void Forecast_equals_the_measured_drift_after_the_edit()
    {
        var c = EditingFixtures.Gpt2Vocab(3, 24, 2, 40);
        using var b = new ReferenceBackend();
        using var m = Model.FromHost(c, RandomWeights.Create(c, 17, 0.2), b);
        var tf = new Transformer(m);
        var tok = TokenizerFactory.Gpt2(c);
        var cm = EditingFixtures.RandomSpd(c.DFf, 3);
        var rome = new Rome(new RomeHparams { Layers = [1], VLossLayer = 2, VNumGradSteps = 5, ContextTemplateLengthParams = [[5, 2]], VLr = 0.5 }, tok, _ => cm);
        var probes = new FactProbes(tok);
        EditRequest[] facts =
        [
            new() { Subject = "Paris", Prompt = "{} is the capital of", TargetNew = "x" },
            new() { Subject = "Danielle Darrieux", Prompt = "{} was born in", TargetNew = "x" },
            new() { Subject = "Marie Curie", Prompt = "The mother tongue of {} is", TargetNew = "x" },
            new() { Subject = "Marie Curie", Prompt = "{} worked in the field of", TargetNew = "x" },
        ];
        var bank = InterferenceMonitor.Bank(tf, probes, facts, 1);
        Assert.Equal(facts.Length, bank.Count);
        var before = bank.Select(k => FactProbes.MlpOutput(tf, 1, k.Key)).ToArray();

        var delta = rome.ComputeDeltas(tf, [Request]).Single();
        var kp = rome.LastTrace!.KPrompt;
        var forecast = InterferenceMonitor.Forecast(delta, kp, bank, top: 2);
        var vCur = FactProbes.MlpOutput(tf, 1, kp);
        double own = Math.Sqrt(rome.LastTrace.VStar.Zip(vCur, (x, y) => (x - y) * (x - y)).Sum());
        Assert.True(Math.Abs(forecast.OwnChange - own) <= 1e-9 * own, $"own change {forecast.OwnChange:R} vs ||v* − W k_p|| {own:R}");

        m.ApplyDelta(delta);
        var drifts = new double[bank.Count];
        for (int j = 0; j < bank.Count; j++)
        {
            var after = FactProbes.MlpOutput(tf, 1, bank[j].Key);
            var measured = after.Zip(before[j], (x, y) => x - y).ToArray();
            Num.AssertClose(InterferenceMonitor.Apply(delta, bank[j].Key), measured, 1e-9, $"ΔW k for {bank[j].Name}");
            drifts[j] = Math.Sqrt(measured.Sum(x => x * x));
            double p = delta.Left.Zip(bank[j].Key, (x, y) => x * y).Sum() / delta.Left.Zip(kp, (x, y) => x * y).Sum();
            Assert.Contains(forecast.MostAtRisk, r => r.Name != bank[j].Name || Math.Abs(r.P - p) <= 1e-9 * Math.Abs(p));
        }
        Assert.True(Math.Abs(forecast.MaxDrift - drifts.Max()) <= 1e-9 * drifts.Max(), $"max drift {forecast.MaxDrift:R} vs measured {drifts.Max():R}");
        Assert.True(Math.Abs(forecast.MeanDrift - drifts.Average()) <= 1e-9 * drifts.Average(), "mean drift");
        Assert.Equal(2, forecast.MostAtRisk.Count);
        Assert.Equal(bank[Array.IndexOf(drifts, drifts.Max())].Name, forecast.MostAtRisk[0].Name);
        Assert.True(forecast.MostAtRisk[0].Drift >= forecast.MostAtRisk[1].Drift, "listed by drift, largest first");
    }

    [Fact]
    public void A_bank_key_of_the_wrong_size_is_refused_with_its_name()
    {
        var delta = new WeightDelta(0, 1, [1.0, 2.0, 3.0], [1.0, 1.0]);
        var e = Assert.Throws<ArgumentException>(() => InterferenceMonitor.Forecast(delta, [1.0, 0, 0], [new BankKey("Paris: {} is", [1.0, 2.0])]));
        Assert.Contains("Paris: {} is", e.Message);
    }
}

/// <summary>The monitor-against-damage study: its statistics, and that it leaves the model as it found it.</summary>
public class InterferenceStudyTests
{
    [Fact]
    public void Pearson_and_spearman_match_hand_computed_values()
    {
        double[] x = [1, 2, 3, 4, 5], y = [2, 4, 5, 4, 5];
        // Pearson: cov 1.5 (sum of products 6 / 4), sd_x 1.5811, sd_y 1.2247 -> 6 / sqrt(10 * 6)
        Assert.Equal(6 / Math.Sqrt(60), Palimpsest.Evaluation.InterferenceStudy.Pearson(x, y), 12);
        // ranks of y with ties: [1, 2.5, 4.5, 2.5, 4.5]
        Assert.Equal([1, 2.5, 4.5, 2.5, 4.5], Palimpsest.Evaluation.InterferenceStudy.Ranks(y));
        Assert.Equal(1.0, Palimpsest.Evaluation.InterferenceStudy.Pearson(Palimpsest.Evaluation.InterferenceStudy.Ranks(x), Palimpsest.Evaluation.InterferenceStudy.Ranks(x.Select(v => v * v * v).ToArray())), 12);
        Assert.True(double.IsNaN(Palimpsest.Evaluation.InterferenceStudy.Pearson([1.0, 1.0], [2.0, 3.0])), "no spread in x: NaN");
    }

    [Fact]
    public void Study_pairs_every_edit_with_every_other_fact_and_restores_the_weights_bit_for_bit()
    {
        var c = EditingFixtures.Gpt2Vocab(3, 24, 2, 40);
        using var b = new ReferenceBackend();
        using var m = Model.FromHost(c, RandomWeights.Create(c, 5, 0.2), b);
        var tf = new Transformer(m);
        var tok = TokenizerFactory.Gpt2(c);
        var cm = EditingFixtures.RandomSpd(c.DFf, 4);
        var rome = new Rome(new RomeHparams { Layers = [1], VLossLayer = 2, VNumGradSteps = 3, ContextTemplateLengthParams = [[4, 1]], VLr = 0.5 }, tok, _ => cm);
        EditRequest R(string s, string p, string t, string tt) => new() { Subject = s, Prompt = p, TargetNew = t, TargetTrue = tt };
        EditRequest[] edits = [R("Danielle Darrieux", "The mother tongue of {} is", "English", "French"), R("Paris", "{} is the capital of", "Italy", "France")];
        EditRequest[] bank = [R("Paris", "{} is the capital of", "x", "France"), R("Marie Curie", "{} was born in", "x", "Warsaw"), R("Rome", "{} is in", "x", "Italy")];
        var w0 = new double[c.DFf * c.DModel]; b.ToHost(m.Params.Blocks[1].WDown, w0);
        var r = Palimpsest.Evaluation.InterferenceStudy.Run(tf, tok, rome, new FactProbes(tok), edits, bank);
        // edit 1 is bank fact 0 itself, so it is left out of its pairs
        Assert.Equal(2 * 3 - 1, r.Pairs.Count);
        Assert.DoesNotContain(r.Pairs, p => p.Edit == 1 && p.Fact == "Paris: {} is the capital of");
        Assert.All(r.Pairs, p => Assert.True(p.Drift >= 0 && double.IsFinite(p.NllAfter), p.ToString()));
        var w1 = new double[w0.Length]; b.ToHost(m.Params.Blocks[1].WDown, w1);
        Assert.Equal(w0, w1);
    }
}
