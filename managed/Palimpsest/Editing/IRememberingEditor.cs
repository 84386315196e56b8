using Palimpsest.Runtime;

namespace Palimpsest.Editing;

/// <summary>
/// An editor whose state grows with the edits it has made, beyond the weights: AlphaEdit's C_p (the
/// earlier batches' K Kᵀ, whose keys were read from the model as it was then and cannot be read
/// again later), LEMoE's adaptor (router and experts). A lifelong run saves that memory with its
/// state and restores it on resume.
/// </summary>
public interface IRememberingEditor
{
    /// <summary>The memory as named float64 arrays (copies); model: the Transformer it edits.</summary>
    IReadOnlyDictionary<string, double[]> SaveMemory(Transformer model);

    /// <summary>Replaces the memory with one <see cref="SaveMemory"/> returned (by this editor's kind, with the same hyper-parameters).</summary>
    void RestoreMemory(Transformer model, IReadOnlyDictionary<string, double[]> memory);
}
