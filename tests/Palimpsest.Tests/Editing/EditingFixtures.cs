using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tokenization;

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

    /// <summary>Requests the editor tests share: a single-token target, another, and a two-token one.</summary>
    public static readonly EditRequest[] Requests =
    [
        new() { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English" },
        new() { Subject = "Lyon", Prompt = "{} is a twin city of", TargetNew = "Manila" },
        new() { Subject = "Toko Yasuda", Prompt = "{} plays the", TargetNew = "piano keyboard" },
    ];

    /// <summary>A small random GPT-2 (4 layers, d 20, f 36, the GPT-2 vocabulary) in float64 with its Transformer and tokenizer; disposes them all.</summary>
    public sealed class Small : IDisposable
    {
        public Small(int layers = 4, int seed = 23, double scale = 0.2)
        {
            Config = Gpt2Vocab(layers, 20, 2, 36);
            Backend = new ReferenceBackend();
            Model = Model.FromHost(Config, RandomWeights.Create(Config, seed, scale), Backend);
            Tf = new Transformer(Model);
            Tok = TokenizerFactory.Gpt2(Config);
        }

        public ModelConfig Config { get; }
        public ReferenceBackend Backend { get; }
        public Model Model { get; }
        public Transformer Tf { get; }
        public ITextTokenizer Tok { get; }

        public void Dispose()
        {
            Tf.Dispose(); Model.Dispose(); Backend.Dispose();
        }
    }
}
