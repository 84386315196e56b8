using Palimpsest.Runtime;

namespace Palimpsest.Editing;

/// <summary>
/// An editor that derives state from the model at its first edit and keeps it for the rest of its
/// life: ROME's, WilKE's and MEMIT's context templates (text the model itself generates) and C's
/// Cholesky factors. A stream resumed in another process must derive that state from the unedited
/// weights, as the first edit of the uninterrupted stream did, before the edited weights are
/// loaded; <see cref="Prepare"/> derives it now, from the weights as they are.
/// </summary>
public interface IPreparedEditor : IEditor
{
    /// <summary>Derives (once) what the first edit would otherwise derive; later calls change nothing.</summary>
    void Prepare(Transformer model);
}
