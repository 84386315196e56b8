using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Editing;

/// <summary>AlphaEdit on a small random model, float64: the null-space property and the closed form.</summary>
public class AlphaEditTests
{
    private static ModelConfig Config() => EditingFixtures.Gpt2Vocab(4, 20, 2, 36);

    /// <summary>C = Q diag(λ) Qᵀ with 20 eigenvalues in [0.5, 2] (preserved) and 16 in [1e-4, 1e-2] (null space).</summary>
    private static (double[] C, Matrix<double> Preserved) KnownSpectrum(int f, int seed)
    {
        var rng = new Random(seed);
        var q = Matrix<double>.Build.Dense(f, f, (_, _) => rng.NextDouble() - 0.5).QR().Q;
        var lambda = Enumerable.Range(0, f).Select(i => i < 20 ? 0.5 + 1.5 * rng.NextDouble() : 1e-4 + 1e-2 * rng.NextDouble()).ToArray();
        var c = q * Matrix<double>.Build.DenseOfDiagonalArray(lambda) * q.Transpose();
        return (c.ToRowMajorArray(), q.SubMatrix(0, f, 0, 20));
    }

    private static readonly EditRequest[] Batch1 =
    [
        new() { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English" },
        new() { Subject = "Lyon", Prompt = "{} is a twin city of", TargetNew = "Manila" },
    ];
    private static readonly EditRequest[] Batch2 = [new() { Subject = "Apple A5", Prompt = "{} was created by", TargetNew = "Google" }];

    [Fact]
    public void Updates_leave_preserved_keys_unchanged_and_solve_the_projected_system()
    {
        var c = Config();
        using var b = new ReferenceBackend();
        using var m = Model.FromHost(c, RandomWeights.Create(c, 29, 0.2), b);
        var tf = new Transformer(m);
        var (cm, preserved) = KnownSpectrum(c.DFf, 3);
        var editor = new AlphaEdit(new AlphaEditHparams { Layers = [0, 1], VNumGradSteps = 4, L2 = 0.5 }, TokenizerFactory.Gpt2(c), _ => cm);
        var P = editor.Projection(0, c.DFf);
        Assert.Equal(16, (int)Math.Round(P.Trace()));                 // rank of the null space
        Num.AssertClose((P * P).ToRowMajorArray(), P.ToRowMajorArray(), 1e-10, "P is a projector");

        foreach (var batch in new[] { Batch1, Batch2 })
        {
            var deltas = editor.ComputeDeltas(tf, batch);
            foreach (var d in deltas)
            {
                var dW = Matrix<double>.Build.DenseOfRowMajor(c.DFf, c.DModel, d.ToDense());
                double scale = dW.FrobeniusNorm();
                Assert.True(scale > 0, "the update is not empty");
                // every preserved direction (eigenvalue >= threshold) maps to zero change
                double leak = (preserved.Transpose() * dW).FrobeniusNorm();
                Assert.True(leak <= 1e-10 * scale, $"layer {d.Layer}: ||K0ᵀ ΔW|| = {leak:E2} vs ||ΔW|| = {scale:E2}");
            }
            foreach (var (d, (layer, K, R, Cp)) in deltas.Zip(editor.LastSolves!))
            {
                // (P (K Kᵀ + C_p) + α I) ΔW = P K Rᵀ, checked with MathNet's dense inverse
                var Pl = editor.Projection(layer, c.DFf);
                var A = Pl * (K * K.Transpose() + Cp) + Matrix<double>.Build.DenseIdentity(c.DFf) * editor.Hparams.L2;
                var expected = A.Inverse() * Pl * K * R.Transpose();
                Num.AssertClose(d.ToDense(), expected.ToRowMajorArray(), 1e-8, $"layer {layer} closed form");
            }
            if (batch == Batch2) Assert.True(editor.LastSolves!.All(s => s.Cp.FrobeniusNorm() > 0), "the second batch sees the first batch's keys");
            foreach (var d in deltas) m.ApplyDelta(d);
            editor.Remember(tf, batch);
        }
    }

    [Fact]
    public void Projection_of_a_full_rank_statistic_above_threshold_is_zero_so_nothing_changes()
    {
        var c = Config();
        using var b = new ReferenceBackend();
        using var m = Model.FromHost(c, RandomWeights.Create(c, 29, 0.2), b);
        var identity = Matrix<double>.Build.DenseIdentity(c.DFf).ToRowMajorArray(); // every eigenvalue 1 >= 0.02
        var editor = new AlphaEdit(new AlphaEditHparams { Layers = [1], VNumGradSteps = 2 }, TokenizerFactory.Gpt2(c), _ => identity);
        var d = editor.ComputeDeltas(new Transformer(m), Batch2).Single();
        Assert.All(d.ToDense(), x => Assert.Equal(0.0, x, 15));
    }
}
