using Palimpsest.Runtime;

namespace Palimpsest.Editing;

/// <summary>
/// An editor that can make its edit at a layer the caller names instead of its own (ROME): the
/// lifelong monitor moves a batch whose forecast damage is too high to the layer where it is least.
/// </summary>
public interface ILayerEditor : IEditor
{
    /// <summary>The deltas of the batch's edit made at <paramref name="layer"/> (its key statistics must be available).</summary>
    IReadOnlyList<WeightDelta> ComputeDeltasAt(Transformer model, IReadOnlyList<EditRequest> requests, int layer);
}
