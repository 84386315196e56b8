using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Training;

/// <summary>
/// AdamW (torch.optim.AdamW's update, <see cref="AdamUpdate.AdamWFolded"/>) over the float32
/// parameters of a model on the SIMD CPU backend, updated in place by <see cref="Adam{T}"/>.
/// Weight decay applies to matrices (embeddings included), not to norm gains or biases (GPT-2 /
/// nanoGPT practice). Gradients are clipped to a global norm first.
/// </summary>
public sealed class AdamW
{
    private readonly Adam<float> _adam;
    private readonly int[] _lengths;
    private readonly SimdTensor[] _params;

    public AdamW(ParamSet<Tensor> parameters, double beta1 = 0.9, double beta2 = 0.98, double eps = 1e-8)
    {
        var tensors = parameters.Named().Select(nt =>
            nt.Value as SimdTensor ?? throw new ArgumentException($"AdamW updates float32 CPU tensors; parameter '{nt.Name}' is {nt.Value}")).ToArray();
        _lengths = [.. tensors.Select(t => checked((int)t.Length))];
        _params = tensors;
        _adam = new Adam<float>([.. tensors.Select(t => t.Data.AsMemory(0, checked((int)t.Length)))],
            new AdamSettings(AdamUpdate.AdamWFolded, beta1, beta2, eps), [.. tensors.Select(t => t.Rank == 2)]);
    }

    public double Beta1 => _adam.Settings.Beta1;
    public double Beta2 => _adam.Settings.Beta2;
    public double Eps => _adam.Settings.Eps;

    /// <summary>
    /// One update with gradients <paramref name="grads"/> (same structure as the parameters).
    /// Returns the gradient's global norm before clipping.
    /// </summary>
    public double Step(ParamSet<Tensor> grads, double lr, double weightDecay, double clipNorm)
    {
        var g = grads.Named().Select(nt => ((SimdTensor)nt.Value).Data).ToArray();
        if (g.Length != _lengths.Length) throw new ArgumentException("gradients do not match the parameters");
        double sq = 0;
        for (int i = 0; i < g.Length; i++)
        {
            var s = g[i].AsSpan(0, _lengths[i]);
            sq += TensorPrimitives.Dot(s, s);
        }
        double norm = Math.Sqrt(sq);
        float clip = clipNorm > 0 && norm > clipNorm ? (float)(clipNorm / norm) : 1f;
        _adam.Step([.. g.Select((a, i) => new ReadOnlyMemory<float>(a, 0, _lengths[i]))], lr, weightDecay, clip);
        // the parameters were written through memory got at construction: their packed copies are stale
        foreach (var p in _params) p.MarkWritten();
        return norm;
    }
}
