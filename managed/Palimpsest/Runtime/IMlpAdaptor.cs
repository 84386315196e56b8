using Palimpsest.Backends;
using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

/// <summary>
/// A bypass beside one block's MLP: every forward of a <see cref="Transformer"/> that holds it adds
/// its output to that block's MLP output at every row (LEMoE's mixture of experts). It reads the
/// block's MLP keys (the input of the down-projection) and the tokens; nothing else of the model.
/// The backward treats its output as a constant (no gradient flows through it into the model).
/// </summary>
public interface IMlpAdaptor
{
    /// <summary>The block whose MLP output it adds to.</summary>
    int Layer { get; }

    /// <summary>
    /// mlpOut [T, d] += the adaptor's output for keys [T, f]. history: the tokens before ids (a KV
    /// cache's, empty without one); segments: packed sequence lengths (each starts afresh, no
    /// history) or null.
    /// </summary>
    void Apply(IBackend backend, ReadOnlySpan<int> history, ReadOnlySpan<int> ids, IReadOnlyList<int>? segments, Tensor keys, Tensor mlpOut);
}
