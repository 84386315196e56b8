using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Runtime;
using Palimpsest.Training;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Palimpsest.Tests.Training;

/// <summary>
/// <see cref="Adam{T}"/> replaced three implementations: inline in DeltaOptimizer.Loop (ROME's v*,
/// MEMIT's z*), private in Lemoe, and Training's AdamW. Each former formula is kept here as it was
/// written, and the one class must give the same bits for 50 steps of random gradients at that
/// user's settings, so that no committed result moves.
/// </summary>
public class AdamTests
{
    private const int Steps = 50;

    // A gradient whose scale changes from step to step (1e-4 to 10), with some exact zeros.
    private static double[] Gradient(Random rng, int n)
    {
        double scale = Math.Pow(10, rng.NextDouble() * 5 - 4);
        return Enumerable.Range(0, n).Select(_ => rng.Next(10) == 0 ? 0 : (rng.NextDouble() - 0.5) * scale).ToArray();
    }

    private static void AssertSameBits(double[] expected, double[] actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(BitConverter.DoubleToInt64Bits(expected[i]) == BitConverter.DoubleToInt64Bits(actual[i]),
                $"{what}[{i}]: {actual[i]:R}, the former formula gives {expected[i]:R}");
    }

    /// <summary>DeltaOptimizer.Loop's former update of δ, step tStep (from 1).</summary>
    private static void DeltaReference(double[] delta, double[] m, double[] v, double[] g, int tStep, double lr)
    {
        const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8; // torch.optim.Adam defaults
        for (int j = 0; j < delta.Length; j++)
        {
            m[j] = beta1 * m[j] + (1 - beta1) * g[j];
            v[j] = beta2 * v[j] + (1 - beta2) * g[j] * g[j];
            double mh = m[j] / (1 - Math.Pow(beta1, tStep)), vh = v[j] / (1 - Math.Pow(beta2, tStep));
            delta[j] -= lr * mh / (Math.Sqrt(vh) + eps);
        }
    }

    [Theory]
    [InlineData(0.5, 4.0)]    // ROME's v_lr and clamp_norm_factor
    [InlineData(0.1, 0.75)]   // MEMIT's
    public void Delta_optimiser_settings_give_the_former_bits(double lr, double clamp)
    {
        const int d = 64;
        var rng = new Random(3);
        var expected = new double[d]; var m = new double[d]; var v = new double[d];
        var delta = new double[d];
        var opt = new Adam<double>([delta], new AdamSettings(AdamUpdate.Adam));
        for (int t = 1; t <= Steps; t++)
        {
            var g = Gradient(rng, d);
            DeltaReference(expected, m, v, g, t, lr);
            opt.Step([g], lr);
            // the loop's clamp between steps: Adam must read the array as the caller left it
            foreach (var x in new[] { expected, delta })
            {
                double nn = Math.Sqrt(x.Sum(y => y * y));
                if (nn > clamp) for (int j = 0; j < d; j++) x[j] *= clamp / nn;
            }
            AssertSameBits(expected, delta, $"δ after step {t}");
        }
        Assert.Contains(delta, x => x != 0);
    }

    /// <summary>Lemoe's former private AdamW, one step over every parameter (t from 1).</summary>
    private static void LemoeReference(double[][] parameters, double[][] ms, double[][] vs, double[][] grads, int t, double lr, double weightDecay)
    {
        const double Beta1 = 0.9, Beta2 = 0.999, Eps = 1e-8;
        double c1 = 1 - Math.Pow(Beta1, t), c2 = 1 - Math.Pow(Beta2, t);
        for (int k = 0; k < parameters.Length; k++)
        {
            var p = parameters[k]; var g = grads[k]; var m = ms[k]; var v = vs[k];
            for (int i = 0; i < p.Length; i++)
            {
                m[i] = Beta1 * m[i] + (1 - Beta1) * g[i];
                v[i] = Beta2 * v[i] + (1 - Beta2) * g[i] * g[i];
                p[i] -= lr * (m[i] / c1 / (Math.Sqrt(v[i] / c2) + Eps) + weightDecay * p[i]);
            }
        }
    }

    [Theory]
    [InlineData(2e-4, 0.01)]  // LemoeHparams' defaults
    [InlineData(0.05, 0.0)]
    public void Lemoe_settings_give_the_former_bits(double lr, double weightDecay)
    {
        int[] lengths = [640, 320, 16, 256, 128]; // A, B, key, W_down, W_up
        var rng = new Random(7);
        var expected = lengths.Select(n => Enumerable.Range(0, n).Select(_ => rng.NextDouble() - 0.5).ToArray()).ToArray();
        var got = expected.Select(p => (double[])p.Clone()).ToArray();
        var ms = lengths.Select(n => new double[n]).ToArray(); var vs = lengths.Select(n => new double[n]).ToArray();
        var opt = new Adam<double>([.. got.Select(p => new Memory<double>(p))], new AdamSettings(AdamUpdate.AdamW));
        for (int t = 1; t <= Steps; t++)
        {
            var grads = lengths.Select(n => Gradient(rng, n)).ToArray();
            LemoeReference(expected, ms, vs, grads, t, lr, weightDecay);
            opt.Step([.. grads.Select(g => new ReadOnlyMemory<double>(g))], lr, weightDecay);
            for (int k = 0; k < lengths.Length; k++) AssertSameBits(expected[k], got[k], $"parameter {k} after step {t}");
        }
    }

    /// <summary>Training's former AdamW.Step over float arrays (lengths[i] of each used); returns the global norm.</summary>
    private static double TrainingReference(float[][] ps, float[][] ms, float[][] vs, bool[] decays, float[][] g, int t, double lr, double weightDecay,
        double clipNorm, double beta1, double beta2, double epsD)
    {
        double sq = 0;
        for (int i = 0; i < g.Length; i++) sq += TensorPrimitives.Dot(g[i].AsSpan(0, ps[i].Length), g[i].AsSpan(0, ps[i].Length));
        double norm = Math.Sqrt(sq);
        float clip = clipNorm > 0 && norm > clipNorm ? (float)(clipNorm / norm) : 1f;
        double bc1 = 1 - Math.Pow(beta1, t), bc2 = 1 - Math.Pow(beta2, t);
        float b1 = (float)beta1, b2 = (float)beta2, eps = (float)epsD;
        float stepSize = (float)(lr / bc1), rbc2 = (float)(1 / Math.Sqrt(bc2));
        for (int i = 0; i < ps.Length; i++)
        {
            var p = ps[i]; var m = ms[i]; var v = vs[i]; var gr = g[i];
            float wd = decays[i] ? (float)(lr * weightDecay) : 0f;
            for (int k = 0; k < p.Length; k++)
            {
                float gk = gr[k] * clip;
                float mk = m[k] = b1 * m[k] + (1 - b1) * gk;
                float vk = v[k] = b2 * v[k] + (1 - b2) * gk * gk;
                p[k] -= wd * p[k] + stepSize * mk / (MathF.Sqrt(vk) * rbc2 + eps);
            }
        }
        return norm;
    }

    [Fact]
    public void Training_settings_give_the_former_bits()
    {
        var c = SmallConfigs.Get("gpt2");
        using var b = new SimdBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 9), b);
        var named = model.Params.Named().Select(nt => (SimdTensor)nt.Value).ToArray();
        var expected = named.Select(t => t.Span.ToArray()).ToArray();
        var ms = expected.Select(p => new float[p.Length]).ToArray(); var vs = expected.Select(p => new float[p.Length]).ToArray();
        var decays = named.Select(t => t.Rank == 2).ToArray();
        Assert.Contains(true, decays); Assert.Contains(false, decays);
        var opt = new AdamW(model.Params);
        var grads = model.ZerosLikeParams();
        var rng = new Random(11);
        int clipped = 0;
        for (int t = 1; t <= Steps; t++)
        {
            var g = new List<float[]>();
            foreach (var (_, gt) in grads.Named())
            {
                b.Upload(gt, Gradient(rng, (int)gt.Length));
                g.Add(((SimdTensor)gt).Data);
            }
            double lr = 1e-3 * (1 + Math.Cos(Math.PI * t / Steps)) / 2; // a cosine schedule
            double clipNorm = t % 3 == 0 ? 0 : 1.0;                   // off, or on (a norm of 1 clips the larger gradients)
            double want = TrainingReference(expected, ms, vs, decays, [.. g], t, lr, 0.1, clipNorm, opt.Beta1, opt.Beta2, opt.Eps);
            double norm = opt.Step(grads, lr, 0.1, clipNorm);
            Assert.Equal(BitConverter.DoubleToInt64Bits(want), BitConverter.DoubleToInt64Bits(norm));
            if (clipNorm > 0 && norm > clipNorm) clipped++;
            for (int i = 0; i < named.Length; i++)
                AssertSameBits([.. expected[i].Select(x => (double)x)], [.. named[i].Span.ToArray().Select(x => (double)x)], $"{i} after step {t}");
        }
        Assert.InRange(clipped, 1, Steps - 1);
    }

    [Fact]
    public void Adam_without_decay_refuses_a_weight_decay()
    {
        var opt = new Adam<double>([new double[4]], new AdamSettings(AdamUpdate.Adam));
        var e = Assert.Throws<ArgumentException>(() => opt.Step([new double[4]], 0.1, 0.01));
        Assert.Contains("weight decay", e.Message);
    }
}
