namespace Palimpsest.Editing;

/// <summary>
/// One fact to rewrite: Prompt holds "{}" where the subject goes ("The mother tongue of {} is"),
/// TargetNew is the new object (" English" is tokenised with a leading space by the editors).
/// The optional prompts are for evaluation only; editors never read them.
/// </summary>
public sealed record EditRequest
{
    public required string Subject { get; init; }
    public required string Prompt { get; init; }
    public required string TargetNew { get; init; }
    public string? TargetTrue { get; init; }
    /// <summary>Dataset id (CounterFact case_id, zsRE index) for reports and the journal.</summary>
    public string? CaseId { get; init; }
    /// <summary>Rephrasings that should also yield TargetNew (generalisation).</summary>
    public IReadOnlyList<string> ParaphrasePrompts { get; init; } = [];
    /// <summary>Unrelated prompts whose answers must not change (locality / neighbourhood).</summary>
    public IReadOnlyList<string> NeighborhoodPrompts { get; init; } = [];
    /// <summary>The answer each neighbourhood prompt should keep (EasyEdit's locality_ground_truth); null = TargetTrue.</summary>
    public string? NeighborhoodAnswer { get; init; }

    /// <summary>The rewriting prompt with the subject filled in.</summary>
    public string FilledPrompt => Prompt.Replace("{}", Subject);

    /// <summary>Checks the request; throws ArgumentException naming the field.</summary>
    public void Validate(string where = "request")
    {
        if (string.IsNullOrWhiteSpace(Subject)) throw new ArgumentException($"{where}: field 'subject' is empty");
        if (string.IsNullOrWhiteSpace(TargetNew)) throw new ArgumentException($"{where}: field 'target_new' is empty");
        int n = Prompt.Split("{}").Length - 1;
        if (n != 1) throw new ArgumentException($"{where}: field 'prompt' must contain exactly one '{{}}' for the subject (has {n}): \"{Prompt}\"");
    }
}
