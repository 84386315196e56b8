using Palimpsest.Runtime;

namespace Palimpsest.Editing;

/// <summary>
/// A knowledge editor, one per method (<see cref="Editors"/> lists them). A weight editor computes
/// deltas for a batch of requests from the model's current weights and does not apply them (the
/// caller does, in memory or through the journal, so every change is recorded and revertible). An
/// adaptor editor (<see cref="EditorCapabilities.Adaptor"/>: LEMoE) changes the adaptor it installs
/// on the Transformer instead and returns no delta. The hooks below have defaults, so an editor
/// implements only what its method needs; callers call them all and never test for a type.
/// </summary>
public interface IEditor
{
    /// <summary>The method's name in the editor table (rome, memit, ...), as journals record it.</summary>
    string Method { get; }

    /// <summary>The batch's weight deltas (an adaptor editor: its adaptor changed in <paramref name="model"/>, no delta).</summary>
    IReadOnlyList<WeightDelta> ComputeDeltas(Transformer model, IReadOnlyList<EditRequest> requests);

    /// <summary>Called once a batch's deltas are in the model: what the editor keeps of it (AlphaEdit: C_p += K Kᵀ of its keys).</summary>
    void AfterApply(Transformer model, IReadOnlyList<EditRequest> requests) { }

    /// <summary>What the last batch added to the editor's memory beyond the weights, to journal with it (UltraEdit: its rows' moments); null: nothing.</summary>
    IReadOnlyDictionary<string, double[]>? LastMemoryContribution => null;

    /// <summary>
    /// Continues from a reopened edited model: the active earlier edits of this method, oldest first
    /// (AlphaEdit protects their keys, recomputed with the current weights; UltraEdit adds their journaled moments).
    /// </summary>
    void Reopen(Transformer model, IReadOnlyList<JournaledEdit> earlier) { }

    /// <summary>Where the editor adds the time of its phases (keys, values, solve) when someone measures them; default: not measured.</summary>
    PhaseTimes? Phases { get => null; set { } }

    /// <summary>One line about the last batch for a results table (ROME: "v* loss 4.1 -> 0.05"); "-" when there is nothing to say.</summary>
    string LastOutcome => "-";
}
