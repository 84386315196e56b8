using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Evaluation;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Editing;

/// <summary>UltraEdit: the lifelong normaliser, the value gradients, the ridge solve, and an edit that takes.</summary>
public class UltraEditTests
{
    private static readonly EditRequest[] Requests = EditingFixtures.Requests;

    [Fact]
    public void Running_moments_over_uneven_batches_equal_a_two_pass_computation()
    {
        var rng = new Random(5);
        const int width = 13;
        // rows far from zero with unequal spread: a naive sum-of-squares variance would lose digits here
        var rows = Enumerable.Range(0, 157).Select(_ => Enumerable.Range(0, width).Select(j => 1e3 * (j + 1) + rng.NextDouble() * (j + 0.5)).ToArray()).ToList();
        var norm = new LifelongNormalizer();
        int at = 0;
        foreach (int size in new[] { 1, 7, 2, 64, 33, 50 })
        {
            norm.Add(4, 9, RowMoments.Of(rows.GetRange(at, size), width));
            at += size;
        }
        Assert.Equal(rows.Count, at);
        var running = norm.Moments(4, 9);
        var twoPass = RowMoments.Of(rows, width);
        Assert.Equal(twoPass.Count, running.Count);
        Num.AssertClose(running.Mean, twoPass.Mean, 1e-14, "running mean");
        Num.AssertClose(running.M2, twoPass.M2, 1e-11, "running M2");
        // a shape's moments are its own
        Assert.Equal(0, norm.Moments(9, 4).Count);
        // standardised rows: mean 0 and (unbiased) standard deviation 1 per column, to the ε the reference adds
        var z = rows.Select(r => { var c = (double[])r.Clone(); norm.Normalise(4, 9, c); return c; }).ToList();
        for (int j = 0; j < width; j++)
        {
            double m = z.Average(r => r[j]), v = z.Sum(r => (r[j] - m) * (r[j] - m)) / (z.Count - 1);
            Assert.True(Math.Abs(m) < 1e-9, $"column {j}: mean {m:E2}");
            Assert.True(Math.Abs(v - 1) < 1e-5, $"column {j}: variance {v:E6}");
        }
        // saved and restored: the same numbers
        var again = new LifelongNormalizer();
        again.Restore(norm.Save(), "test");
        Assert.Equal(running.Mean, again.Moments(4, 9).Mean);
        Assert.Equal(running.M2, again.Moments(4, 9).M2);
    }

    [Theory]
    [InlineData(5, 9, 4)]   // N < f: the N×N push-through solve
    [InlineData(11, 6, 3)]  // N ≥ f: the f×f solve, kept as d < f factors
    [InlineData(9, 4, 7)]   // N ≥ f, f < d: kept as f factors
    public void The_delta_solves_its_ridge_normal_equations(int n, int f, int d)
    {
        var rng = new Random(n * 31 + f);
        var K = Matrix<double>.Build.Dense(n, f, (_, _) => rng.NextDouble() * 4 - 2);
        var V = Matrix<double>.Build.Dense(n, d, (_, _) => rng.NextDouble() - 0.5);
        var delta = UltraEdit.Solve(2, K, V);
        var dW = Matrix<double>.Build.DenseOfRowMajor(f, d, delta.ToDense());
        // (KᵀK + I) ΔW = Kᵀ V
        var lhs = (K.Transpose() * K + Matrix<double>.Build.DenseIdentity(f)) * dW;
        Num.AssertClose(lhs.ToRowMajorArray(), (K.Transpose() * V).ToRowMajorArray(), 1e-12, "normal equations");
        Assert.Equal(n < f ? n : Math.Min(f, d), delta.Rank);
    }

    [Theory]
    [InlineData("f64")]
    [InlineData("f32")]
    public void Value_gradients_of_every_row_equal_those_of_an_intervention_at_that_row(string kind)
    {
        // the backward's copy of d loss / d MLP output [T, d] against the reference route: one zero
        // intervention per row, whose gradient the backward has always returned
        var c = EditingFixtures.Gpt2Vocab(3, 20, 2, 36);
        using var b = TestBackends.Create(kind);
        using var m = Model.FromHost(c, RandomWeights.Create(c, 41, 0.3), b);
        using var tf = new Transformer(m);
        int[] ids = [464, 2802, 11880, 286, 11, 318, 257];
        int T = ids.Length, layer = 1;
        var zeros = Enumerable.Range(0, T).Select(_ => b.Zeros(c.DModel)).ToArray();
        var ivGrads = Enumerable.Range(0, T).Select(_ => b.Zeros(c.DModel)).ToArray();
        using var captured = b.Zeros(T, c.DModel);
        try
        {
            var ivs = Enumerable.Range(0, T).Select(t => new Intervention(layer, InterventionSite.MlpOutput, t, zeros[t])).ToArray();
            using (var r = tf.Forward(ids, new ForwardOptions { KeepForBackward = true, LogitRows = [3, 4, 5], Interventions = ivs }))
            using (var dl = b.Zeros(r.Logits.Shape))
            {
                b.CrossEntropy(r.Logits, [318, 257, 1332], dl);
                tf.Backward(r, dl, ivGrads);
            }
            using (var r = tf.Forward(ids, new ForwardOptions { KeepForBackward = true, LogitRows = [3, 4, 5] }))
            using (var dl = b.Zeros(r.Logits.Shape))
            {
                b.CrossEntropy(r.Logits, [318, 257, 1332], dl);
                tf.Backward(r, dl, null, mlpOutputGrads: new Dictionary<int, Tensors.Tensor> { [layer] = captured });
            }
            var all = new double[T * c.DModel];
            b.ToHost(captured, all);
            var expected = new double[T * c.DModel];
            for (int t = 0; t < T; t++) b.ToHost(ivGrads[t], expected.AsSpan(t * c.DModel, c.DModel));
            Num.AssertClose(all, expected, kind == "f64" ? 1e-14 : 1e-6, "value gradients");
            // rows after the last scored one have no gradient; the scored ones do
            Assert.All(all.AsSpan(6 * c.DModel).ToArray(), x => Assert.Equal(0.0, x));
            Assert.Contains(all.AsSpan(0, c.DModel).ToArray(), x => x != 0);
        }
        finally
        {
            foreach (var t in zeros.Concat(ivGrads)) t.Dispose();
        }
    }

    [Fact]
    public void The_editor_solves_with_its_keys_and_normalised_gradients_and_remembers_the_moments()
    {
        using var s = new EditingFixtures.Small(layers: 3);
        var (c, m, tf, tok) = (s.Config, s.Model, s.Tf, s.Tok);
        var hp = new UltraEditHparams { Layers = [2, 0], Lr = 0.01, BatchSize = 2 };
        var ue = new UltraEdit(hp, tok);
        var before = m.DownProjection(0);
        var deltas = ue.ComputeDeltas(tf, Requests);
        Assert.Equal(before, m.DownProjection(0)); // computed, not applied
        Assert.Equal([0, 2], deltas.Select(x => x.Layer));
        // every token of prompt + target, once per layer
        int rows = Requests.Sum(r => tok.Encode(r.FilledPrompt).Length + tok.Encode(" " + r.TargetNew).Length);
        var moments = ue.Normalizer.Moments(c.DFf, c.DModel);
        Assert.Equal(2 * rows, moments.Count);
        foreach (var (delta, (layer, K, V)) in deltas.Zip(ue.LastSolves!))
        {
            Assert.Equal(rows, K.RowCount);
            var dW = Matrix<double>.Build.DenseOfRowMajor(c.DFf, c.DModel, delta.ToDense());
            var lhs = (K.Transpose() * K + Matrix<double>.Build.DenseIdentity(c.DFf)) * dW;
            Num.AssertClose(lhs.ToRowMajorArray(), (K.Transpose() * V).ToRowMajorArray(), 1e-10, $"layer {layer} normal equations");
            // V's rows are −lr ‖k̂‖² ĝ: pointing against the gradient, so a small step lowers the loss
            Assert.True(V.FrobeniusNorm() > 0);
        }
        // a second edit continues the moments; its contribution is its own rows' moments
        var memory = ue.SaveMemory(tf);
        ue.ComputeDeltas(tf, Requests.Take(1).ToArray());
        int rows1 = tok.Encode(Requests[0].FilledPrompt).Length + tok.Encode(" " + Requests[0].TargetNew).Length;
        Assert.Equal(2 * (rows + rows1), ue.Normalizer.Moments(c.DFf, c.DModel).Count);
        Assert.Equal(2 * rows1, ue.LastContribution![$"normalizer.{c.DFf}x{c.DModel}.n"][0]);
        // restored to the earlier memory, the same second edit gives the same delta bit for bit
        var first = ue.ComputeDeltas(tf, Requests.Skip(1).ToArray());
        ue.RestoreMemory(tf, memory);
        ue.ComputeDeltas(tf, Requests.Take(1).ToArray());
        var again = ue.ComputeDeltas(tf, Requests.Skip(1).ToArray());
        Assert.Equal(first.Select(x => x.Right), again.Select(x => x.Right));
    }

    [Fact]
    public void A_batch_edit_on_the_fact_model_takes()
    {
        string dir = Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5");
        using var b = new SimdBackend();
        using var m = Model.Load(dir, b);
        using var tf = new Transformer(m);
        var tok = TokenizerFactory.ForModel(dir, m.Config);
        var hp = UltraEditHparams.FromJson(File.ReadAllText(Path.Combine(dir, "ultraedit.json")), "ultraedit.json");
        var batch = DatasetReader.Load(Path.Combine(dir, "requests.json"), 8);
        var probe = new FactProbe(tf, tok);
        Assert.All(batch, r => Assert.False(probe.Answers(r), $"{r.FilledPrompt} already answers {r.TargetNew}"));
        var deltas = new UltraEdit(hp, tok).ComputeDeltas(tf, batch);
        foreach (var d in deltas) m.ApplyDelta(d);
        int took = batch.Count(r => probe.Answers(r));
        Assert.True(took >= 7, $"{took} of {batch.Count} requests answer their new target after one UltraEdit batch");
    }
}
