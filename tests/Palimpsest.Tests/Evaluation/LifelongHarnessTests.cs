using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Evaluation;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Editing;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Evaluation;

public class LifelongHarnessTests
{
    /// <summary>Returns the same fixed deltas for every batch (or none).</summary>
    private sealed class FixedEditor(Func<WeightDelta[]> make) : IEditor
    {
        public string Method => "fixed";
        public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer model, IReadOnlyList<EditRequest> requests) => make();
    }

    internal static (ReferenceBackend, Model, Transformer, ITextTokenizer, List<EditRequest> Stream, List<EditRequest> HeldOut) Setup()
    {
        var c = EditingFixtures.Gpt2Vocab(2, 16, 2, 24);
        var b = new ReferenceBackend();
        var m = Model.FromHost(c, RandomWeights.Create(c, 41, 0.5), b);
        var tf = new Transformer(m);
        var tok = TokenizerFactory.Gpt2(c);
        string Greedy(string p) => tok.Decode(new Generator(tf).Generate(tok.Encode(p), 1));
        // a target the probe can check: a greedy token with a leading space ("{prompt} {target}")
        bool Usable(string g) => g.Length > 1 && g[0] == ' ' && tok.Encode(g).Length == 1 && tok.Encode(" " + g[1..]).Length == 1;
        string[] names = ["Paris", "Lyon", "Apple", "Danielle Darrieux", "Toyota", "Berlin", "Rome", "Oslo", "Madrid", "Tokyo",
            "Cairo", "Lima", "Nokia", "Sony", "Ford", "Kyoto", "Delhi", "Seoul", "Dublin", "Vienna"];
        var usable = names.Where(s => Usable(Greedy($"The home of {s} is"))).ToList();
        Assert.True(usable.Count >= 8, $"only {usable.Count} subjects give a checkable greedy token on this random model");
        // requests whose "new" target is what the model already says: a no-op editor scores 1 everywhere
        var stream = usable.Take(5).Select(s => new EditRequest
        {
            Subject = s, Prompt = "The home of {} is", TargetNew = Greedy($"The home of {s} is")[1..],
            ParaphrasePrompts = [$"The home of {s} is"], NeighborhoodPrompts = ["The sky is"],
        }).ToList();
        var heldOut = usable.Skip(5).Take(3).Select(s => new EditRequest
        {
            Subject = s, Prompt = "The home of {} is", TargetNew = "x", TargetTrue = Greedy($"The home of {s} is")[1..],
        }).ToList();
        return (b, m, tf, tok, stream, heldOut);
    }

    [Fact]
    public void A_no_op_editor_keeps_every_score_at_one_and_reports_doubling_checkpoints()
    {
        var (b, m, tf, tok, stream, heldOut) = Setup();
        using var _b = b; using var _m = m;
        var cps = new LifelongHarness(tf, tok).Run(new FixedEditor(() => []), stream, 1, heldOut);
        Assert.Equal([1, 2, 4, 5], cps.Select(c => c.Edits));
        Assert.All(cps, c =>
        {
            Assert.Equal(1.0, c.ES); Assert.Equal(1.0, c.GS, 12); Assert.Equal(1.0, c.LS); Assert.Equal(1.0, c.ERS); Assert.Equal(1.0, c.ORS);
            Assert.Equal(1.0, c.S, 12);
            Assert.Empty(c.DeltaNorms);
        });
    }

    /// <summary>A long run's caller saves each checkpoint as it comes: a stream that fails part-way has already handed over what it measured.</summary>
    [Fact]
    public void Each_checkpoint_is_handed_over_when_reached_so_a_stream_that_fails_later_keeps_them()
    {
        var (b, m, tf, tok, stream, heldOut) = Setup();
        using var _b = b; using var _m = m;
        var seen = new List<int[]>();
        int calls = 0;
        var failsAtFourth = new FixedEditor(() => ++calls == 4 ? throw new ArgumentException("refused") : []);
        var e = Assert.Throws<ArgumentException>(() => new LifelongHarness(tf, tok).Run(failsAtFourth, stream, 1, heldOut,
            checkpointed: cps => seen.Add(cps.Select(c => c.Edits).ToArray())));
        Assert.Contains("edit 4 of the stream", e.Message);
        Assert.Equal([[1], [1, 2]], seen);

        seen.Clear();
        var all = new LifelongHarness(tf, tok).Run(new FixedEditor(() => []), stream, 1, heldOut, checkpointed: cps => seen.Add(cps.Select(c => c.Edits).ToArray()));
        Assert.Equal([[1], [1, 2], [1, 2, 4], [1, 2, 4, 5]], seen);
        Assert.Equal(all.Select(c => c.Edits), seen[^1]);
    }

    [Fact]
    public void A_damaging_editor_is_seen_in_the_scores_and_the_weight_drift()
    {
        var (b, m, tf, tok, stream, heldOut) = Setup();
        using var _b = b; using var _m = m;
        int f = m.Config.DFf, d = m.Config.DModel;
        var rng = new Random(5);
        WeightDelta[] Damage() => [new WeightDelta(1, 1,
            Enumerable.Range(0, f).Select(_ => 3 * (rng.NextDouble() - 0.5)).ToArray(),
            Enumerable.Range(0, d).Select(_ => 3 * (rng.NextDouble() - 0.5)).ToArray())];
        var cps = new LifelongHarness(tf, tok).Run(new FixedEditor(Damage), stream, 2, heldOut);
        Assert.Equal([2, 4, 5], cps.Select(c => c.Edits));
        var last = cps[^1];
        Assert.True(last.S < 1, $"S stayed at {last.S} under random damage");
        Assert.True(last.DeltaNorms[1] > cps[0].DeltaNorms[1], "the drift of layer 1 grows with the edits");
    }

    /// <summary>
    /// The interference monitor in the stream: every request's forecast is logged against the
    /// held-out facts and the edits so far; above the refusal threshold a batch is not applied.
    /// </summary>
    [Fact]
    public void The_monitor_logs_each_forecast_and_refuses_batches_above_its_threshold()
    {
        var (b, m, tf, tok, stream, heldOut) = Setup();
        using var _b = b; using var _m = m;
        int f = m.Config.DFf, d = m.Config.DModel;
        var rng = new Random(9);
        WeightDelta[] Damage() => [new WeightDelta(1, 1,
            Enumerable.Range(0, f).Select(_ => 3 * (rng.NextDouble() - 0.5)).ToArray(),
            Enumerable.Range(0, d).Select(_ => 3 * (rng.NextDouble() - 0.5)).ToArray())];
        var probes = new FactProbes(tok, "last");

        var h = new LifelongHarness(tf, tok);
        var cps = h.Run(new FixedEditor(Damage), stream, 2, heldOut, monitor: new LifelongMonitor(heldOut, probes));
        Assert.Equal(stream.Count, h.MonitorLog.Count); // one edited layer: one forecast per request
        Assert.All(h.MonitorLog, e => { Assert.False(e.Refused); Assert.True(e.OwnChange > 0 && e.MaxDrift > 0, e.ToString()); });
        Assert.Equal([1, 1, 2, 2, 3], h.MonitorLog.Select(e => e.Batch));
        Assert.True(cps[^1].DeltaNorms[1] > 0);
        // batch 2's bank holds batch 1's requests: the most-at-risk fact can be an earlier edit
        Assert.Contains(h.MonitorLog.Where(e => e.Batch > 1), e => e.MostAtRisk.Length > 0);

        // a threshold nothing passes under: every batch refused, the weights never change
        var before = new double[m.Params.Blocks[1].WDown.Length];
        m.Backend.ToHost(m.Params.Blocks[1].WDown, before);
        var h2 = new LifelongHarness(tf, tok);
        var cps2 = h2.Run(new FixedEditor(Damage), stream, 2, heldOut, monitor: new LifelongMonitor(heldOut, probes, RefuseAbove: 1e-12));
        Assert.All(h2.MonitorLog, e => Assert.True(e.Refused));
        var after = new double[before.Length];
        m.Backend.ToHost(m.Params.Blocks[1].WDown, after);
        Assert.Equal(before, after);
        Assert.Empty(cps2[^1].DeltaNorms);
    }

    /// <summary>Fixed rank-one deltas at whichever layer it is asked for (layer 1 on its own).</summary>
    private sealed class LayeredEditor(Func<int, WeightDelta> at) : ILayerEditor
    {
        public string Method => "layered";
        public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer model, IReadOnlyList<EditRequest> requests) => [at(1)];
        public IReadOnlyList<WeightDelta> ComputeDeltasAt(Transformer model, IReadOnlyList<EditRequest> requests, int layer) => [at(layer)];
    }

    /// <summary>
    /// With MoveTo, a batch over the threshold is applied at the layer where its forecast is under it
    /// instead of being refused: logged as moved, the weights changed there and not at its own layer.
    /// </summary>
    [Fact]
    public void The_monitor_moves_a_batch_over_its_threshold_to_a_layer_where_the_forecast_is_under_it()
    {
        var (b0, m0, _, _, stream, heldOut) = Setup();
        b0.Dispose(); m0.Dispose();
        var one = stream.Take(1).ToList();
        int f = EditingFixtures.Gpt2Vocab(2, 16, 2, 24).DFf, d = EditingFixtures.Gpt2Vocab(2, 16, 2, 24).DModel;
        WeightDelta At(int layer)
        {
            var rng = new Random(100 + layer);
            return new WeightDelta(layer, 1, Enumerable.Range(0, f).Select(_ => rng.NextDouble() - 0.5).ToArray(), Enumerable.Range(0, d).Select(_ => rng.NextDouble() - 0.5).ToArray());
        }
        // each layer's forecast alone, on a fresh model: the threshold goes between them
        double Relative(int layer)
        {
            var (b, m, tf, tok, _, _) = Setup();
            using var _b = b; using var _m = m;
            var h = new LifelongHarness(tf, tok);
            h.Run(new LayeredEditor(_ => At(layer)), one, 1, heldOut, monitor: new LifelongMonitor(heldOut, new FactProbes(tok, "last")));
            return h.MonitorLog.Single().MaxRelative;
        }
        double r0 = Relative(0), r1 = Relative(1);
        Assert.True(r0 != r1, "both layers forecast the same: no threshold separates them");
        // the editor's own layer (1) must be the worse one: flip the deltas' roles if it is not
        Func<int, WeightDelta> make = r1 > r0 ? At : l => At(1 - l) with { Layer = l };
        double worse = Math.Max(r0, r1), better = Math.Min(r0, r1);
        {
            var (b, m, tf, tok, _, _) = Setup();
            using var _b = b; using var _m = m;
            var before = Enumerable.Range(0, 2).Select(m.DownProjection).ToArray();
            var h = new LifelongHarness(tf, tok);
            var cps = h.Run(new LayeredEditor(make), one, 1, heldOut,
                monitor: new LifelongMonitor(heldOut, new FactProbes(tok, "last"), RefuseAbove: (worse + better) / 2, MoveTo: [0]));
            Assert.Equal(2, h.MonitorLog.Count);
            Assert.Equal((1, (int?)0, false), (h.MonitorLog[0].Layer, h.MonitorLog[0].MovedTo, h.MonitorLog[0].Refused));
            Assert.Equal((0, (int?)null, false), (h.MonitorLog[1].Layer, h.MonitorLog[1].MovedTo, h.MonitorLog[1].Refused));
            Assert.True(h.MonitorLog[1].MaxRelative <= (worse + better) / 2);
            Assert.Equal([0], cps[^1].DeltaNorms.Keys);
            Assert.Equal(before[1], m.DownProjection(1));
        }
        {
            // under both layers' forecasts: refused, with the moves tried
            var (b, m, tf, tok, _, _) = Setup();
            using var _b = b; using var _m = m;
            var h = new LifelongHarness(tf, tok);
            var cps = h.Run(new LayeredEditor(make), one, 1, heldOut,
                monitor: new LifelongMonitor(heldOut, new FactProbes(tok, "last"), RefuseAbove: better / 2, MoveTo: [0]));
            Assert.True(h.MonitorLog.Single().Refused);
            Assert.Empty(cps[^1].DeltaNorms);
        }
    }

    /// <summary>
    /// A neighbourhood prompt that is another request's own prompt is meant to change once that
    /// request is edited: LS leaves it out from then on (in a batch holding both, it never counts),
    /// and counts it while that request is still ahead in the stream.
    /// </summary>
    [Fact]
    public void Locality_leaves_out_neighbourhood_prompts_the_stream_itself_edits()
    {
        var (b, m, tf, tok, stream, heldOut) = Setup();
        using var _b = b; using var _m = m;
        // request i's neighbour is request i+1's fact (the last one's: an unrelated prompt)
        var chained = stream.Select((r, i) => new EditRequest
        {
            Subject = r.Subject, Prompt = r.Prompt, TargetNew = r.TargetNew, ParaphrasePrompts = r.ParaphrasePrompts,
            NeighborhoodPrompts = [i + 1 < stream.Count ? stream[i + 1].FilledPrompt : "The sky is"],
        }).ToList();
        var whole = new LifelongHarness(tf, tok).Run(new FixedEditor(() => []), chained, chained.Count, heldOut);
        Assert.Equal(1.0, whole.Single().LS); // only the last request's neighbour counts
        var one = new LifelongHarness(tf, tok).Run(new FixedEditor(() => []), chained, 1, heldOut);
        Assert.All(one, c => Assert.Equal(1.0, c.LS));
        var allInBatch = chained.Take(4).Select((r, i) => new EditRequest
        {
            Subject = r.Subject, Prompt = r.Prompt, TargetNew = r.TargetNew, NeighborhoodPrompts = [chained[(i + 1) % 4].FilledPrompt],
        }).ToList();
        Assert.True(double.IsNaN(new LifelongHarness(tf, tok).Run(new FixedEditor(() => []), allInBatch, 4, heldOut).Single().LS));
    }

    [Fact]
    public void An_editor_that_refuses_an_edit_is_reported_with_the_edit_it_stopped_on()
    {
        var (b, m, tf, tok, stream, heldOut) = Setup();
        using var _b = b; using var _m = m;
        int calls = 0;
        var e = Assert.Throws<ArgumentException>(() => new LifelongHarness(tf, tok).Run(
            new FixedEditor(() => ++calls == 3 ? throw new ArgumentException("no layer to choose") : []), stream, 1, heldOut));
        Assert.StartsWith($"edit 3 of the stream ({stream[2].Subject}: ", e.Message);
        Assert.EndsWith("no layer to choose", e.Message);
    }

    [Fact]
    public void Harmonic_mean_skips_undefined_parts_and_is_zero_when_any_part_is()
    {
        Assert.Equal(2.0 / (1 / 0.5 + 1 / 1.0), LifelongHarness.HarmonicMean([0.5, 1.0, double.NaN]), 12);
        Assert.Equal(0, LifelongHarness.HarmonicMean([0.5, 0]));
    }
}
