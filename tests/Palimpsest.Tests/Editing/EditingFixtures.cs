using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Backends;
using Palimpsest.Models;

namespace Palimpsest.Tests.Editing;

/// <summary>Small random models and statistics shared by the editor tests (CPU and GPU).</summary>
public static class EditingFixtures
{
    /// <summary>A GPT-2 with the real GPT-2 vocabulary (so the real tokenizer applies) and the given small sizes.</summary>
    public static ModelConfig Gpt2Vocab(int layers, int d, int heads, int dff, int positions = 48) => new()
    {
        Arch = Architecture.Gpt2, Layers = layers, DModel = d, Heads = heads, KvHeads = heads, HeadDim = d / heads, DFf = dff, Vocab = 50257,
        MaxPositions = positions, NormEps = 1e-5, Norm = NormKind.LayerNorm, Act = Activation.GeluTanh, LearnedPositions = true,
        QkvBias = true, AttnOutBias = true, MlpBias = true, TiedHead = true, EosTokenId = 50256,
    };

    /// <summary>C = A Aᵀ / 3f + 0.01 I [f, f] row-major: symmetric positive definite, well conditioned.</summary>
    public static double[] RandomSpd(int f, int seed)
    {
        var rng = new Random(seed);
        var a = Matrix<double>.Build.Dense(f, 3 * f, (_, _) => rng.NextDouble() - 0.5);
        return (a * a.Transpose() / (3 * f) + Matrix<double>.Build.DenseIdentity(f) * 0.01).ToRowMajorArray();
    }
}
