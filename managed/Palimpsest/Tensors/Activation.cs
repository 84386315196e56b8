namespace Palimpsest.Tensors;

/// <summary>
/// Elementwise activation of a feed-forward block: what a model's config names (Models) and what
/// a backend's ops compute (Backends), so it lives below both.
/// </summary>
public enum Activation
{
    /// <summary>GPT-2's tanh approximation ("gelu_new", "gelu_pytorch_tanh").</summary>
    GeluTanh,
    /// <summary>Exact erf GELU ("gelu").</summary>
    GeluErf,
    Relu,
    /// <summary>SiLU, used inside SwiGLU (Llama): the backend op is SiluMul.</summary>
    Silu,
}
