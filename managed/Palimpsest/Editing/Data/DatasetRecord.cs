namespace Palimpsest.Editing.Data;

/// <summary>Which layout a dataset file uses (detected from its first record).</summary>
public enum DatasetFormat
{
    /// <summary>EasyEdit's CounterFact: case_id, prompt (filled), subject, target_new, ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth.</summary>
    CounterFactEasyEdit,
    /// <summary>ROME's CounterFact: requested_rewrite {prompt with {}, subject, target_new {str}, target_true {str}}, paraphrase_prompts, neighborhood_prompts, ...</summary>
    CounterFactRome,
    /// <summary>MEND/ROME zsRE: subject, src (question), alt (new answer), answers, rephrase, loc, loc_ans.</summary>
    Zsre,
    /// <summary>ROME's known_1000: subject, attribute, template, prompt, relation_id (true facts, TargetNew = attribute).</summary>
    KnownFacts,
}

/// <summary>
/// One dataset record: the edit request plus what only evaluation reads (generation prompts for
/// fluency, the relation id for grouping).
/// </summary>
public sealed record DatasetRecord
{
    public required EditRequest Request { get; init; }
    public required DatasetFormat Format { get; init; }
    /// <summary>Prompts for free generation (ROME format only): fluency / n-gram entropy.</summary>
    public IReadOnlyList<string> GenerationPrompts { get; init; } = [];
    /// <summary>Prompts about other subjects that share target_new's attribute (ROME format only).</summary>
    public IReadOnlyList<string> AttributePrompts { get; init; } = [];
    /// <summary>Wikidata relation id (P103, ...) where the format has one.</summary>
    public string? RelationId { get; init; }
}
