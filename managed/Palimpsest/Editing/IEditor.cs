using Palimpsest.Runtime;

namespace Palimpsest.Editing;

/// <summary>
/// A closed-form knowledge editor: computes weight deltas for a batch of requests from the model's
/// current weights. It does not apply them (the EditJournal does, so every change is recorded and
/// revertible) and does no I/O.
/// </summary>
public interface IEditor
{
    string Method { get; }
    IReadOnlyList<WeightDelta> ComputeDeltas(Transformer model, IReadOnlyList<EditRequest> requests);
}
