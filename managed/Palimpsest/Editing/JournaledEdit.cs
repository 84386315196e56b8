namespace Palimpsest.Editing;

/// <summary>An active journaled edit as an editor continues from it (<see cref="IEditor.Reopen"/>): its id, its requests, and what it journaled for its editor's memory.</summary>
public sealed record JournaledEdit(long Id, IReadOnlyList<EditRequest> Requests, IReadOnlyDictionary<string, double[]> Memory);
