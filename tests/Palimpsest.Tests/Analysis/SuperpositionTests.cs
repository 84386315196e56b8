using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Analysis;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Editing;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Analysis;

/// <summary>The superposition matrices against dense-inverse references, and the keys against FactProbes.</summary>
public class SuperpositionTests
{
    private static double[] RandomKeys(int n, int f, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n * f).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
    }

    [Fact]
    public void P_has_a_unit_diagonal_is_asymmetric_and_matches_a_dense_inverse()
    {
        const int n = 7, f = 12;
        var c = EditingFixtures.RandomSpd(f, 5);
        var keys = RandomKeys(n, f, 6);
        var m = SuperpositionMatrices.Compute(keys, n, new InverseSecondMoment(c, f));
        Assert.Equal(0, m.Ridge);
        Assert.Null(m.Note);

        var cinv = Matrix<double>.Build.DenseOfRowMajor(f, f, c).Inverse();
        var k = Matrix<double>.Build.DenseOfRowMajor(n, f, keys);
        var g = k * cinv * k.Transpose(); // kᵢᵀC⁻¹kⱼ
        int asymmetric = 0;
        for (int i = 0; i < n; i++)
        {
            Assert.Equal(1.0, m.P[i * n + i]);
            Assert.Equal(1.0, m.WhitenedCosine[i * n + i]);
            for (int j = 0; j < n; j++)
            {
                Assert.Equal(g[i, j] / g[i, i], m.P[i * n + j], 10);
                Assert.Equal(g[i, j] / Math.Sqrt(g[i, i] * g[j, j]), m.WhitenedCosine[i * n + j], 10);
                double q = k.Row(i).DotProduct(k.Row(j));
                Assert.Equal(q, m.Q[i * n + j], 10);
                Assert.Equal(q / (k.Row(i).L2Norm() * k.Row(j).L2Norm()), m.RawCosine[i * n + j], 10);
                Assert.Equal(m.WhitenedCosine[i * n + j], m.WhitenedCosine[j * n + i], 14);
                if (Math.Abs(m.P[i * n + j] - m.P[j * n + i]) > 1e-3 * Math.Abs(m.P[i * n + j])) asymmetric++;
            }
        }
        Assert.True(asymmetric > 0, "P should be asymmetric for keys of different whitened norms");
    }

    [Fact]
    public void With_C_the_identity_whitened_and_raw_cosines_agree()
    {
        const int n = 5, f = 8;
        var eye = Matrix<double>.Build.DenseIdentity(f).ToRowMajorArray();
        var keys = RandomKeys(n, f, 2);
        var m = SuperpositionMatrices.Compute(keys, n, new InverseSecondMoment(eye, f));
        Num.AssertClose(m.WhitenedCosine, m.RawCosine, 1e-13, "whitened vs raw cosine, C = I");
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                Assert.Equal(m.Q[i * n + j] / m.Q[i * n + i], m.P[i * n + j], 12);
    }

    [Fact]
    public void A_singular_C_gets_a_ridge_that_the_result_states()
    {
        const int f = 10;
        var rng = new Random(9);
        var a = Matrix<double>.Build.Dense(f, 4, (_, _) => rng.NextDouble() - 0.5); // rank 4 of 10
        var c = (a * a.Transpose()).ToRowMajorArray();
        var cinv = new InverseSecondMoment(c, f);
        Assert.True(cinv.Ridge > 0, "a rank-4 C needs a ridge");
        Assert.Contains("ridge", cinv.Note);
        var m = SuperpositionMatrices.Compute(RandomKeys(3, f, 1), 3, cinv);
        Assert.Equal(cinv.Ridge, m.Ridge);
        Assert.Equal(cinv.Note, m.Note);
        Assert.All(m.WhitenedCosine, v => Assert.InRange(v, -1 - 1e-9, 1 + 1e-9));
    }

    [Fact]
    public void The_keys_of_the_analysis_are_FactProbes_KeyAt_on_a_tiny_random_model()
    {
        var cfg = EditingFixtures.Gpt2Vocab(3, 24, 3, 40);
        using var b = new ReferenceBackend();
        using var model = Model.FromHost(cfg, RandomWeights.Create(cfg, 21, 0.2), b);
        using var tf = new Transformer(model);
        var tok = TokenizerFactory.Gpt2(cfg);
        EditRequest[] facts =
        [
            new() { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English" },
            new() { Subject = "Edwin of Northumbria", Prompt = "The official religion of {} is", TargetNew = "Islam" },
            new() { Subject = "Toko Yasuda", Prompt = "{} plays the", TargetNew = "piano" },
            new() { Subject = "Paris", Prompt = "{} is the capital of", TargetNew = "Italy" },
        ];
        int[] layers = [0, 2];
        var keys = Superposition.Keys(tf, tok, facts, layers);
        var probes = new FactProbes(tok);
        int f = cfg.DFf;
        foreach (int l in layers)
            for (int i = 0; i < facts.Length; i++)
                Assert.Equal(probes.KeyAt(tf, facts[i].Prompt, facts[i].Subject, l), keys[l].AsSpan(i * f, f).ToArray());

        // the whole analysis over those keys, C random SPD per layer
        var stats = layers.ToDictionary(l => l, l => new KeyStatistics(l, f, 1000, EditingFixtures.RandomSpd(f, 30 + l)));
        var r = Superposition.Analyze(tf, tok, facts, stats);
        Assert.Equal(layers, r.Layers.Select(x => x.Layer));
        foreach (var layer in r.Layers)
        {
            var expected = SuperpositionMatrices.Compute(keys[layer.Layer], facts.Length, new InverseSecondMoment(stats[layer.Layer].Matrix, f));
            Assert.Equal(expected.P, layer.Matrices.P);
            Assert.Equal(facts.Length * (facts.Length - 1), layer.P.Count);
            Assert.Equal(Distribution.Mean(SuperpositionMatrices.OffDiagonal(expected.WhitenedCosine, facts.Length)), layer.WhitenedCosine.Mean, 14);
        }
    }
}
