using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Runtime;
using Palimpsest.Training;

namespace Palimpsest.Tests.Training;

public class AdamWTests
{
    /// <summary>torch.optim.AdamW's update written out in float64, step by step.</summary>
    private static void Reference(double[] p, double[] m, double[] v, double[] g, int t, double lr, double wd, bool decay, double b1, double b2, double eps)
    {
        for (int k = 0; k < p.Length; k++)
        {
            if (decay) p[k] *= 1 - lr * wd;
            m[k] = b1 * m[k] + (1 - b1) * g[k];
            v[k] = b2 * v[k] + (1 - b2) * g[k] * g[k];
            double mh = m[k] / (1 - Math.Pow(b1, t)), vh = v[k] / (1 - Math.Pow(b2, t));
            p[k] -= lr * mh / (Math.Sqrt(vh) + eps);
        }
    }

    [Fact]
    public void Three_steps_match_the_float64_reference_and_decay_only_matrices()
    {
        var c = SmallConfigs.Get("gpt2");
        using var b = new SimdBackend();
        using var model = Model.FromHost(c, RandomWeights.Create(c, 9), b);
        var opt = new AdamW(model.Params);
        var rng = new Random(4);
        var named = model.Params.Named().ToList();
        var p = named.Select(nt => { var a = new double[nt.Value.Length]; b.ToHost(nt.Value, a); return a; }).ToList();
        var m = p.Select(a => new double[a.Length]).ToList(); var v = p.Select(a => new double[a.Length]).ToList();
        var grads = model.ZerosLikeParams();
        for (int t = 1; t <= 3; t++)
        {
            var g = new List<double[]>();
            foreach (var (_, gt) in grads.Named())
            {
                var a = Enumerable.Range(0, (int)gt.Length).Select(_ => rng.NextDouble() - 0.5).ToArray();
                b.Upload(gt, a);
                var f = new float[a.Length]; b.ToHost(gt, f); // what the optimiser sees (float32)
                g.Add(f.Select(x => (double)x).ToArray());
            }
            opt.Step(grads, lr: 0.01, weightDecay: 0.1, clipNorm: 0);
            for (int i = 0; i < p.Count; i++) Reference(p[i], m[i], v[i], g[i], t, 0.01, 0.1, named[i].Value.Rank == 2, opt.Beta1, opt.Beta2, opt.Eps);
        }
        for (int i = 0; i < p.Count; i++)
        {
            var got = new double[p[i].Length]; b.ToHost(named[i].Value, got);
            double err = Num.RelErr(got, p[i]);
            Assert.True(err < 1e-5, $"{named[i].Name}: relative error {err:E2} against the float64 AdamW");
        }
    }

    [Fact]
    public void Clipping_scales_the_gradient_to_the_global_norm()
    {
        var c = SmallConfigs.Get("gpt2");
        using var b = new SimdBackend();
        using var m1 = Model.FromHost(c, RandomWeights.Create(c, 9), b);
        using var m2 = Model.FromHost(c, RandomWeights.Create(c, 9), b);
        var g1 = m1.ZerosLikeParams(); var g2 = m1.ZerosLikeParams();
        var rng = new Random(1);
        double sq = 0;
        foreach (var ((_, a), (_, bb)) in g1.Named().Zip(g2.Named()))
        {
            var x = Enumerable.Range(0, (int)a.Length).Select(_ => rng.NextDouble() - 0.5).ToArray();
            b.Upload(a, x);
            var f = new float[x.Length]; b.ToHost(a, f); sq += f.Sum(z => (double)z * z);
            b.Upload(bb, x.Select(z => z / 10).ToArray());
        }
        // Adam is scale-invariant, except through eps: a gradient clipped to norm N/10 moves like the gradient / 10
        double norm = new AdamW(m1.Params).Step(g1, 0.01, 0, clipNorm: Math.Sqrt(sq) / 10);
        Assert.Equal(Math.Sqrt(sq), norm, 6);
        new AdamW(m2.Params).Step(g2, 0.01, 0, clipNorm: 0);
        foreach (var ((n, a), (_, e)) in m1.Params.Named().Zip(m2.Params.Named()))
        {
            var x = new double[a.Length]; b.ToHost(a, x); var y = new double[e.Length]; b.ToHost(e, y);
            Assert.True(Num.RelErr(x, y) < 1e-6, $"{n}: clipped and pre-scaled updates differ");
        }
    }
}
