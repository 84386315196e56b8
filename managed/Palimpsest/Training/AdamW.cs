using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Training;

/// <summary>
/// AdamW (Loshchilov &amp; Hutter; torch.optim.AdamW's update) over the float32 parameters of a
/// model on the SIMD CPU backend, updated in place:
///   m = β₁m + (1−β₁)g; v = β₂v + (1−β₂)g²; p −= lr·(wd·p + m̂ / (√v̂ + ε)).
/// Weight decay applies to matrices (embeddings included), not to norm gains or biases (GPT-2 /
/// nanoGPT practice). Gradients are clipped to a global norm first.
/// </summary>
public sealed class AdamW
{
    private readonly (string Name, float[] P, float[] M, float[] V, bool Decay, int Length)[] _slots;
    private readonly ParamSet<Tensor> _params;
    private int _t;

    public AdamW(ParamSet<Tensor> parameters, double beta1 = 0.9, double beta2 = 0.98, double eps = 1e-8)
    {
        _params = parameters;
        Beta1 = beta1; Beta2 = beta2; Eps = eps;
        _slots = parameters.Named().Select(nt =>
        {
            var t = nt.Value as SimdTensor ?? throw new ArgumentException($"AdamW updates float32 CPU tensors; parameter '{nt.Name}' is {nt.Value}");
            int n = checked((int)t.Length);
            return (nt.Name, t.Data, new float[n], new float[n], t.Rank == 2, n);
        }).ToArray();
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Eps { get; }

    /// <summary>
    /// One update with gradients <paramref name="grads"/> (same structure as the parameters).
    /// Returns the gradient's global norm before clipping.
    /// </summary>
    public double Step(ParamSet<Tensor> grads, double lr, double weightDecay, double clipNorm)
    {
        var g = grads.Named().Select(nt => ((SimdTensor)nt.Value).Data).ToArray();
        if (g.Length != _slots.Length) throw new ArgumentException("gradients do not match the parameters");
        double sq = 0;
        for (int i = 0; i < g.Length; i++)
        {
            var s = g[i].AsSpan(0, _slots[i].Length);
            sq += TensorPrimitives.Dot(s, s);
        }
        double norm = Math.Sqrt(sq);
        float clip = clipNorm > 0 && norm > clipNorm ? (float)(clipNorm / norm) : 1f;
        _t++;
        double bc1 = 1 - Math.Pow(Beta1, _t), bc2 = 1 - Math.Pow(Beta2, _t);
        float b1 = (float)Beta1, b2 = (float)Beta2, eps = (float)Eps;
        float stepSize = (float)(lr / bc1), rbc2 = (float)(1 / Math.Sqrt(bc2));
        Parallel.For(0, _slots.Length, i =>
        {
            var (_, p, m, v, decay, n) = _slots[i];
            var gr = g[i];
            float wd = decay ? (float)(lr * weightDecay) : 0f;
            for (int k = 0; k < n; k++)
            {
                float gk = gr[k] * clip;
                float mk = m[k] = b1 * m[k] + (1 - b1) * gk;
                float vk = v[k] = b2 * v[k] + (1 - b2) * gk * gk;
                p[k] -= wd * p[k] + stepSize * mk / (MathF.Sqrt(vk) * rbc2 + eps);
            }
        });
        return norm;
    }
}
