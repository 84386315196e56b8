using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Runtime;

/// <summary>Tiny configs of odd sizes covering every wiring the engine supports.</summary>
public static class SmallConfigs
{
    public static readonly string[] Names = ["gpt2", "gptj", "neox-parallel", "neox-sequential", "llama-gqa", "llama-mqa-tied", "qwen2-bias", "llama3-scaled", "mistral-window", "qwen2-window"];

    public static ModelConfig Get(string name) => name switch
    {
        "gpt2" => new ModelConfig
        {
            Arch = Architecture.Gpt2, Layers = 2, DModel = 15, Heads = 3, KvHeads = 3, HeadDim = 5, DFf = 23, Vocab = 37,
            MaxPositions = 19, NormEps = 1e-5, Norm = NormKind.LayerNorm, Act = Activation.GeluTanh, LearnedPositions = true,
            QkvBias = true, AttnOutBias = true, MlpBias = true, TiedHead = true,
        },
        "gptj" => new ModelConfig
        {
            Arch = Architecture.GptJ, Layers = 2, DModel = 18, Heads = 3, KvHeads = 3, HeadDim = 6, DFf = 25, Vocab = 41,
            MaxPositions = 19, NormEps = 1e-5, Norm = NormKind.LayerNorm, Act = Activation.GeluTanh, RotaryDim = 4,
            RotaryInterleaved = true, ParallelResidual = true, SharedNorm = true, MlpBias = true, HeadBias = true,
        },
        "neox-parallel" or "neox-sequential" => new ModelConfig
        {
            Arch = Architecture.GptNeoX, Layers = 2, DModel = 16, Heads = 2, KvHeads = 2, HeadDim = 8, DFf = 27, Vocab = 33,
            MaxPositions = 19, NormEps = 1e-5, Norm = NormKind.LayerNorm, Act = Activation.GeluErf, RotaryDim = 4,
            ParallelResidual = name == "neox-parallel", QkvBias = true, AttnOutBias = true, MlpBias = true, RopeTheta = 500,
        },
        "llama-gqa" => new ModelConfig
        {
            Arch = Architecture.Llama, Layers = 2, DModel = 20, Heads = 4, KvHeads = 2, HeadDim = 6, DFf = 29, Vocab = 39,
            MaxPositions = 19, NormEps = 1e-6, Norm = NormKind.RmsNorm, Act = Activation.Silu, GatedMlp = true, RotaryDim = 6,
        },
        "llama-mqa-tied" => new ModelConfig
        {
            Arch = Architecture.Llama, Layers = 3, DModel = 14, Heads = 3, KvHeads = 1, HeadDim = 4, DFf = 17, Vocab = 31,
            MaxPositions = 19, NormEps = 1e-6, Norm = NormKind.RmsNorm, Act = Activation.Silu, GatedMlp = true, RotaryDim = 4,
            TiedHead = true, RopeTheta = 1000,
        },
        // Qwen2's wiring: Llama's, with biases on q, k and v but not on o
        "qwen2-bias" => new ModelConfig
        {
            Arch = Architecture.Llama, Layers = 2, DModel = 16, Heads = 4, KvHeads = 2, HeadDim = 4, DFf = 21, Vocab = 35,
            MaxPositions = 19, NormEps = 1e-6, Norm = NormKind.RmsNorm, Act = Activation.Silu, GatedMlp = true, RotaryDim = 4,
            QkvBias = true, RopeTheta = 1e6, ModelType = "qwen2",
        },
        // Llama 3.1's rope scaling on a short original context: with theta 500000 and 6 rotary dims, pair 0 is kept,
        // pair 1 is in the interpolated band and pair 2 is divided by the factor
        "llama3-scaled" => new ModelConfig
        {
            Arch = Architecture.Llama, Layers = 2, DModel = 18, Heads = 3, KvHeads = 1, HeadDim = 6, DFf = 19, Vocab = 33,
            MaxPositions = 19, NormEps = 1e-5, Norm = NormKind.RmsNorm, Act = Activation.Silu, GatedMlp = true, RotaryDim = 6,
            RopeTheta = 500000, RopeScaling = new RopeScaling(RopeScaling.Llama3Type, 8, 1, 4, 512),
        },
        // Mistral's sliding window on every layer, shorter than the tests' sequences (9 to 13 tokens), with grouped kv heads
        "mistral-window" => new ModelConfig
        {
            Arch = Architecture.Llama, Layers = 2, DModel = 22, Heads = 4, KvHeads = 2, HeadDim = 6, DFf = 25, Vocab = 37,
            MaxPositions = 19, NormEps = 1e-5, Norm = NormKind.RmsNorm, Act = Activation.Silu, GatedMlp = true, RotaryDim = 6,
            SlidingWindow = 4, ModelType = "mistral",
        },
        // Qwen2 with use_sliding_window and max_window_layers 1: layer 0 attends fully, layers 1 and 2 through a window
        // of 3; biases on q, k, v; a tied head
        "qwen2-window" => new ModelConfig
        {
            Arch = Architecture.Llama, Layers = 3, DModel = 13, Heads = 3, KvHeads = 1, HeadDim = 4, DFf = 17, Vocab = 29,
            MaxPositions = 19, NormEps = 1e-6, Norm = NormKind.RmsNorm, Act = Activation.Silu, GatedMlp = true, RotaryDim = 4,
            QkvBias = true, TiedHead = true, RopeTheta = 1e6, SlidingWindow = 3, SlidingLayers = [false, true, true], ModelType = "qwen2",
        },
        _ => throw new ArgumentException(name),
    };
}
