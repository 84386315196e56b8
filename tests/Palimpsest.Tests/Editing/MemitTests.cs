using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Editing;

/// <summary>MEMIT on a small random model with the GPT-2 vocabulary, in float64.</summary>
public class MemitTests
{
    private static ModelConfig Config() => EditingFixtures.Gpt2Vocab(4, 20, 2, 36);

    private static double[] RandomSpd(int f, int seed) => EditingFixtures.RandomSpd(f, seed);

    private static readonly EditRequest[] Requests =
    [
        new() { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English" },
        new() { Subject = "Lyon", Prompt = "{} is a twin city of", TargetNew = "Manila" },
    ];

    private static (ReferenceBackend, Model, Transformer, Memit, double[]) Setup(int[] layers, double lambda = 4.0)
    {
        var c = Config();
        var b = new ReferenceBackend();
        var m = Model.FromHost(c, RandomWeights.Create(c, 23, 0.2), b);
        var cm = RandomSpd(c.DFf, 7);
        var hp = new MemitHparams { Layers = layers, VLossLayer = 3, VNumGradSteps = 5, Mom2UpdateWeight = lambda, ClampNormFactor = 0.75 };
        return (b, m, new Transformer(m), new Memit(hp, TokenizerFactory.Gpt2(c), _ => cm), cm);
    }

    private static double[] Down(ReferenceBackend b, Model m, int l) { var w = new double[m.Params.Blocks[l].WDown.Length]; b.ToHost(m.Params.Blocks[l].WDown, w); return w; }

    [Fact]
    public void Each_layer_update_solves_the_normal_equations_and_the_weights_come_back_bit_exact()
    {
        var (b, m, tf, memit, cm) = Setup([1, 2]);
        using var _b = b; using var _m = m;
        var before = Enumerable.Range(0, 4).Select(l => Down(b, m, l)).ToArray();
        var deltas = memit.ComputeDeltas(tf, Requests);
        for (int l = 0; l < 4; l++) Assert.Equal(before[l], Down(b, m, l)); // restored exactly
        Assert.Equal([1, 2], deltas.Select(x => x.Layer));
        Assert.All(deltas, x => Assert.Equal(2, x.Rank));
        int f = m.Config.DFf, d = m.Config.DModel;
        var C = Matrix<double>.Build.DenseOfRowMajor(f, f, cm);
        foreach (var (delta, (layer, K, R)) in deltas.Zip(memit.LastSolves!))
        {
            var dW = Matrix<double>.Build.DenseOfRowMajor(f, d, delta.ToDense());
            // (λC + K Kᵀ) ΔW = K Rᵀ  — the minimiser of ||Kᵀ(W + ΔW) − (KᵀW + Rᵀ)||² + λ tr(ΔWᵀ C ΔW)
            var lhs = (C * memit.Hparams.Mom2UpdateWeight + K * K.Transpose()) * dW;
            var rhs = K * R.Transpose();
            Num.AssertClose(lhs.ToRowMajorArray(), rhs.ToRowMajorArray(), 1e-10, $"layer {layer} normal equations");
            // and it equals the explicit inverse route
            var viaInverse = (C * memit.Hparams.Mom2UpdateWeight + K * K.Transpose()).Inverse() * K * R.Transpose();
            Num.AssertClose(dW.ToRowMajorArray(), viaInverse.ToRowMajorArray(), 1e-8, $"layer {layer} vs inverse");
        }
        // the residual is spread: the first layer's target is (z* − z)/2, the last one's the remaining error
        Assert.True(memit.LastSolves![0].R.FrobeniusNorm() > 0);
    }

    [Fact]
    public void Applying_the_deltas_moves_the_last_layer_output_towards_z_star()
    {
        // z is read after block 2: block 3 still carries δ from the subject to the answer position
        var (b, m, tf, memit, _) = Setup([0, 1, 2], lambda: 0.05);
        using var _b = b; using var _m = m;
        var probes = new FactProbes(TokenizerFactory.Gpt2(m.Config));
        var deltas = memit.ComputeDeltas(tf, Requests);
        var z = memit.LastZ!;
        var errBefore = new double[Requests.Length];
        var z0 = Requests.Select(r => probes.BlockOutputAt(tf, r.Prompt, r.Subject, 2)).ToArray();
        for (int i = 0; i < Requests.Length; i++)
            errBefore[i] = Math.Sqrt(z[i].Delta.Sum(x => x * x)); // ||z* − z0|| = ||δ||
        foreach (var d in deltas) m.ApplyDelta(d);
        for (int i = 0; i < Requests.Length; i++)
        {
            var now = probes.BlockOutputAt(tf, Requests[i].Prompt, Requests[i].Subject, 2);
            var target = z0[i].Zip(z[i].Delta, (a, b2) => a + b2).ToArray();
            double err = Math.Sqrt(now.Zip(target, (a, b2) => (a - b2) * (a - b2)).Sum());
            Assert.True(err < 0.5 * errBefore[i], $"request {i}: ||z − z*|| {errBefore[i]:E3} -> {err:E3}; z* steps {z[i].Steps} loss {z[i].InitialLoss} -> {z[i].FinalLoss}");
        }
    }

    [Fact]
    public void Bad_hparams_are_refused()
    {
        var c = Config();
        var tok = TokenizerFactory.Gpt2(c);
        Assert.Throws<ArgumentException>(() => new Memit(new MemitHparams { Layers = [] }, tok, _ => []));
        var (b, m, tf, _, cm) = Setup([1]);
        using var _b = b; using var _m = m;
        var bad = new Memit(new MemitHparams { Layers = [2, 1], VNumGradSteps = 1 }, tok, _ => cm);
        Assert.Throws<ArgumentException>(() => bad.ComputeDeltas(tf, Requests));
        var outside = new Memit(new MemitHparams { Layers = [9], VNumGradSteps = 1 }, tok, _ => cm);
        Assert.Throws<ArgumentException>(() => outside.ComputeDeltas(tf, Requests));
        // z* at the last block's output cannot reach the answer: refused instead of a silent empty edit
        var last = new Memit(new MemitHparams { Layers = [2, 3], VNumGradSteps = 1 }, tok, _ => cm);
        var e = Assert.Throws<ArgumentException>(() => last.ComputeDeltas(tf, Requests));
        Assert.Contains("below the model's last layer", e.Message);
    }
}
