using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Runtime;

/// <summary>
/// Finite-difference checks of the backward on random models of odd sizes (float64 reference):
/// the gradient with respect to injected vectors (MLP output and residual stream) for the NLL and
/// KL losses, and the gradient of every parameter tensor (a few random elements each).
/// </summary>
public class GradientCheckTests
{
    public static TheoryData<string> Configs() => new(SmallConfigs.Names);

    private const double H = 1e-5;

    /// <summary>Loss = NLL of the targets + 0.7 · KL(P || Q_ref) on two rows; ids fixed.</summary>
    private sealed class Problem
    {
        public required int[] Ids;
        public required int[] Targets;
        public required double[] RefLogProbs; // [T, V] (only rows 1 and T-1 used via KL rows)
    }

    private static Problem MakeProblem(ModelConfig c, int seed)
    {
        var rng = new Random(seed);
        int T = 9;
        var ids = Enumerable.Range(0, T).Select(_ => rng.Next(c.Vocab)).ToArray();
        var targets = Enumerable.Range(0, T).Select(t => t % 3 == 0 ? -1 : rng.Next(c.Vocab)).ToArray();
        var refLp = new double[T * c.Vocab];
        for (int t = 0; t < T; t++)
        {
            double z = 0;
            for (int v = 0; v < c.Vocab; v++) { refLp[t * c.Vocab + v] = rng.NextDouble() * 2; z += Math.Exp(refLp[t * c.Vocab + v]); }
            for (int v = 0; v < c.Vocab; v++) refLp[t * c.Vocab + v] -= Math.Log(z);
        }
        return new Problem { Ids = ids, Targets = targets, RefLogProbs = refLp };
    }

    private static double Loss(Transformer tf, Problem p, IReadOnlyList<Intervention> ivs, Tensor? dlogits, bool keep, out ForwardResult r)
    {
        var b = tf.Model.Backend;
        r = tf.Forward(p.Ids, new ForwardOptions { Interventions = ivs, KeepForBackward = keep });
        using var refLp = b.FromHost(p.RefLogProbs, p.Ids.Length, tf.Model.Config.Vocab);
        double nll = b.CrossEntropy(r.Logits, p.Targets, dlogits);
        double kl = b.KlDivergence(r.Logits, refLp, dlogits, 0.7);
        return nll + 0.7 * kl;
    }

    private static double LossOnly(Transformer tf, Problem p, IReadOnlyList<Intervention> ivs)
    {
        double l = Loss(tf, p, ivs, null, false, out var r);
        r.Dispose();
        return l;
    }

    [Theory, MemberData(nameof(Configs))]
    public void Intervention_gradients_match_finite_differences(string name)
    {
        var c = SmallConfigs.Get(name);
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 11, 0.3), b);
        var tf = new Transformer(model);
        var p = MakeProblem(c, 5);
        var rng = new Random(3);
        double[] d1 = Enumerable.Range(0, c.DModel).Select(_ => rng.NextDouble() - 0.5).ToArray();
        double[] d2 = Enumerable.Range(0, c.DModel).Select(_ => rng.NextDouble() - 0.5).ToArray();
        double[] d3 = Enumerable.Range(0, c.DModel).Select(_ => rng.NextDouble() - 0.5).ToArray();
        double[] d4 = Enumerable.Range(0, c.DModel).Select(_ => rng.NextDouble() - 0.5).ToArray();
        using var delta4 = b.FromHost(d4, c.DModel);
        using var delta1 = b.FromHost(d1, c.DModel);
        using var delta2 = b.FromHost(d2, c.DModel);
        using var delta3 = b.FromHost(d3, c.DModel);
        var ivs = new[]
        {
            new Intervention(c.Layers - 1, InterventionSite.MlpOutput, 4, delta1),
            new Intervention(1, InterventionSite.ResidualIn, 2, delta2),
            new Intervention(0, InterventionSite.AttnOutput, 3, delta3),
            new Intervention(c.Layers - 1, InterventionSite.BlockOutput, 6, delta4),
        };
        using var dlogits = b.Zeros(p.Ids.Length, c.Vocab);
        Loss(tf, p, ivs, dlogits, true, out var r);
        using var g1 = b.Zeros(c.DModel);
        using var g2 = b.Zeros(c.DModel);
        using var g3 = b.Zeros(c.DModel);
        using var g4 = b.Zeros(c.DModel);
        tf.Backward(r, dlogits, [g1, g2, g3, g4]);
        r.Dispose();

        foreach (var (delta, host, grad, what) in new[] { (delta1, d1, g1, "mlp-output"), (delta2, d2, g2, "residual"), (delta3, d3, g3, "attn-output"), (delta4, d4, g4, "block-output") })
        {
            var analytic = new double[c.DModel]; b.ToHost(grad, analytic);
            var numeric = new double[c.DModel];
            for (int j = 0; j < c.DModel; j++)
            {
                double keep = host[j];
                host[j] = keep + H; b.Upload(delta, host); double lp = LossOnly(tf, p, ivs);
                host[j] = keep - H; b.Upload(delta, host); double lm = LossOnly(tf, p, ivs);
                host[j] = keep; b.Upload(delta, host);
                numeric[j] = (lp - lm) / (2 * H);
            }
            Num.AssertClose(analytic, numeric, 1e-6, $"{name} {what} gradient");
        }
    }

    [Theory, MemberData(nameof(Configs))]
    public void Weight_gradients_match_finite_differences(string name)
    {
        var c = SmallConfigs.Get(name);
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        var host = RandomWeights.Create(c, 13, 0.3);
        using var model = Model.FromHost(c, host, b);
        var tf = new Transformer(model);
        var p = MakeProblem(c, 6);
        var grads = model.ZerosLikeParams();
        using var dlogits = b.Zeros(p.Ids.Length, c.Vocab);
        Loss(tf, p, [], dlogits, true, out var r);
        tf.Backward(r, dlogits, [], grads);
        r.Dispose();

        var rng = new Random(9);
        var gradByName = grads.Named().ToDictionary(x => x.Name, x => x.Value);
        foreach (var (pname, param) in model.Params.Named())
        {
            var values = new double[param.Length]; b.ToHost(param, values);
            var g = new double[param.Length]; b.ToHost(gradByName[pname], g);
            var picks = Enumerable.Range(0, 4).Select(_ => rng.Next((int)param.Length)).Distinct().ToArray();
            var analytic = new double[picks.Length];
            var numeric = new double[picks.Length];
            for (int i = 0; i < picks.Length; i++)
            {
                int j = picks[i];
                double keep = values[j];
                values[j] = keep + H; b.Upload(param, values); double lp = LossOnly(tf, p, []);
                values[j] = keep - H; b.Upload(param, values); double lm = LossOnly(tf, p, []);
                values[j] = keep; b.Upload(param, values);
                numeric[i] = (lp - lm) / (2 * H);
                analytic[i] = g[j];
            }
            // absolute floor: an element whose gradient is ~0 is compared absolutely
            for (int i = 0; i < picks.Length; i++)
                Assert.True(Math.Abs(analytic[i] - numeric[i]) <= 1e-6 * Math.Max(1, Math.Abs(numeric[i])),
                    $"{name} d loss / d {pname}[{picks[i]}]: analytic {analytic[i]:E6}, numeric {numeric[i]:E6}");
        }
    }
}
