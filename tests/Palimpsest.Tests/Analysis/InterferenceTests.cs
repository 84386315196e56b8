using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Analysis;
using Palimpsest.Editing;
using Palimpsest.Tests.Editing;

namespace Palimpsest.Tests.Analysis;

/// <summary>The interference term of a ROME edit stream against the weights the stream really produces.</summary>
public class InterferenceTests
{
    private const int F = 12, D = 7, M = 9, N = 6;

    private static double[] Random(int count, Random rng, double scale = 1) =>
        Enumerable.Range(0, count).Select(_ => (rng.NextDouble() * 2 - 1) * scale).ToArray();

    /// <summary>
    /// W0 [F, D], C [F, F], original keys [M, F], N targets (k, v), and the deltas a ROME-form stream
    /// applies, built here from a dense C⁻¹ independently of the library: δᵢ = vᵢ − kᵢ·W_{i−1},
    /// ΔWᵢ = C⁻¹kᵢ ⊗ δᵢ / (kᵢᵀC⁻¹kᵢ).
    /// </summary>
    private static (double[] W0, double[] C, double[] K, (double[], double[])[] Targets, List<WeightDelta> Applied, List<double[]> Deltas) Stream(int seed)
    {
        var rng = new Random(seed);
        var w0 = Random(F * D, rng);
        var c = EditingFixtures.RandomSpd(F, seed + 1);
        var k = Random(M * F, rng);
        var targets = Enumerable.Range(0, N).Select(_ => (Random(F, rng), Random(D, rng, 3))).ToArray();
        var cinv = Matrix<double>.Build.DenseOfRowMajor(F, F, c).Inverse();
        var w = Matrix<double>.Build.DenseOfRowMajor(F, D, w0);
        var applied = new List<WeightDelta>();
        var deltas = new List<double[]>();
        foreach (var (key, value) in targets)
        {
            var kv = Vector<double>.Build.DenseOfArray(key);
            var delta = Vector<double>.Build.DenseOfArray(value) - w.TransposeThisAndMultiply(kv);
            var u = cinv * kv / kv.DotProduct(cinv * kv);
            applied.Add(new WeightDelta(3, 1, u.ToArray(), delta.ToArray()));
            deltas.Add(delta.ToArray());
            w += u.OuterProduct(delta);
        }
        return (w0, c, k, targets, applied, deltas);
    }

    [Fact]
    public void Delta_o_equals_Wn_K_minus_W0_K_to_1e8_along_a_stream_of_rome_edits()
    {
        var (w0, c, k, targets, applied, deltas) = Stream(40);
        var predicted = Interference.RomeStream(w0, F, D, new InverseSecondMoment(c, F), targets);
        for (int i = 0; i < N; i++) Num.AssertClose(predicted[i].ValueDelta, deltas[i], 1e-10, $"δ of edit {i}");
        var check = Interference.Check(w0, F, D, applied, predicted, k, M);
        Assert.Equal(Enumerable.Range(1, N), check.Steps.Select(s => s.Edits));
        Assert.True(check.MaxAbsError < 1e-8, $"identity error {check.MaxAbsError:E2}");
        // not vacuous: the drift itself is of order one
        Assert.True(check.Steps[^1].MeasuredNorm > 0.1, $"measured drift {check.Steps[^1].MeasuredNorm}");
        Assert.Equal(check.Steps[^1].MeasuredNorm, check.Steps[^1].PredictedNorm, 8);
    }

    [Fact]
    public void The_identity_check_fails_when_one_value_delta_is_perturbed()
    {
        var (w0, c, k, targets, applied, _) = Stream(41);
        var predicted = Interference.RomeStream(w0, F, D, new InverseSecondMoment(c, F), targets).ToList();
        var bad = (double[])predicted[2].ValueDelta.Clone();
        bad[0] += 1e-4;
        predicted[2] = predicted[2] with { ValueDelta = bad };
        var check = Interference.Check(w0, F, D, applied, predicted, k, M);
        Assert.True(check.Steps[1].MaxAbsError < 1e-8, "steps before the perturbed edit still agree");
        Assert.True(check.Steps[2].MaxAbsError > 1e-8, $"perturbed δ not detected: error {check.Steps[2].MaxAbsError:E2}");
        Assert.True(check.MaxAbsError > 1e-8);
    }

    [Fact]
    public void Earlier_edit_drift_and_growth_per_step()
    {
        var (w0, c, k, targets, applied, _) = Stream(42);
        var cinv = new InverseSecondMoment(c, F);
        var predicted = Interference.RomeStream(w0, F, D, cinv, targets);
        var r = Interference.Compute(predicted, k, M);
        Assert.Equal(N, r.Steps.Count);
        Assert.Equal(0, r.Steps[0].EarlierNorm);
        // Δ_e of the last edit is empty (nothing comes after it); of the first it sums N − 1 terms
        Assert.All(r.Earlier.AsSpan((N - 1) * D, D).ToArray(), v => Assert.Equal(0, v));
        var first = new double[D];
        for (int i = 1; i < N; i++)
            for (int j = 0; j < D; j++) first[j] += predicted[i].P(predicted[0].Key) * predicted[i].ValueDelta[j];
        Num.AssertClose(r.Earlier.AsSpan(0, D), first, 1e-13, "Δ_e of edit 0");
        double norm = Math.Sqrt(r.Original.Sum(v => v * v));
        Assert.Equal(norm, r.Steps[^1].OriginalNorm, 12);
        // the earlier-edit identity (k_{eⱼ}·(W_n − W_j) = Δ_e) is part of Check
        Assert.True(Interference.Check(w0, F, D, applied, predicted, k, M, stride: 4).EarlierMaxAbsError < 1e-8);

        // p of ROME's closed form is the superposition paper's P
        var keys = predicted.SelectMany(e => e.Key).ToArray();
        var m = SuperpositionMatrices.Compute(keys, N, cinv);
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                Assert.Equal(m.P[i * N + j], predicted[i].P(predicted[j].Key), 10);
    }

    [Fact]
    public void From_delta_recovers_the_value_delta_and_the_same_weight_change()
    {
        var rng = new Random(7);
        var delta = new WeightDelta(1, 1, Random(F, rng), Random(D, rng));
        var key = Random(F, rng);
        var e = RankOneEdit.FromDelta(delta, key);
        Num.AssertClose(e.ToWeightDelta(1).ToDense(), delta.ToDense(), 1e-14, "Direction ⊗ δ vs ΔW");
        Assert.Equal(1.0, e.P(key), 12);
        // δ = key · ΔW
        var dense = delta.ToDense();
        var kw = Enumerable.Range(0, D).Select(j => Enumerable.Range(0, F).Sum(i => key[i] * dense[i * D + j])).ToArray();
        Num.AssertClose(e.ValueDelta, kw, 1e-13, "δ");
        Assert.Throws<ArgumentException>(() => RankOneEdit.FromDelta(new WeightDelta(1, 2, Random(2 * F, rng), Random(2 * D, rng)), key));
    }
}
