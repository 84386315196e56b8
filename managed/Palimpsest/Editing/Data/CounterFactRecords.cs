namespace Palimpsest.Editing.Data;

/// <summary>Parses one CounterFact record, in EasyEdit's or ROME's layout, into a <see cref="DatasetRecord"/>.</summary>
internal static class CounterFactRecords
{
    // {"case_id", "prompt" (filled), "subject", "target_new", "ground_truth", "rephrase_prompt", "locality_prompt", "locality_ground_truth"}
    public static DatasetRecord EasyEdit(RecordFields r)
    {
        string subject = r.String("subject");
        string template = r.TemplateFrom("prompt", r.String("prompt"), subject);
        var locality = r.StringList("locality_prompt");
        return new DatasetRecord
        {
            Format = DatasetFormat.CounterFactEasyEdit,
            Request = new EditRequest
            {
                CaseId = r.Id("case_id"),
                Subject = subject,
                Prompt = template,
                TargetNew = r.StringOrOnly("target_new"),
                TargetTrue = r.Has("ground_truth") ? r.StringOrFirst("ground_truth") : null,
                ParaphrasePrompts = r.StringList("rephrase_prompt"),
                NeighborhoodPrompts = locality,
                NeighborhoodAnswer = r.Has("locality_ground_truth") ? r.StringOrFirst("locality_ground_truth") : null,
            },
        };
    }

    // {"case_id", "requested_rewrite": {"prompt" ({}), "subject", "target_new": {"str"}, "target_true": {"str"}, "relation_id"},
    //  "paraphrase_prompts", "neighborhood_prompts", "attribute_prompts", "generation_prompts"}
    // ROME writes targets as {"str": "English", "id": "Q1860"}; a bare string is accepted too.
    public static DatasetRecord Rome(RecordFields r)
    {
        var rw = r.Object("requested_rewrite");
        string subject = rw.String("subject");
        string prompt = rw.String("prompt");
        if (!prompt.Contains("{}")) prompt = rw.TemplateFrom("prompt", prompt, subject);
        return new DatasetRecord
        {
            Format = DatasetFormat.CounterFactRome,
            RelationId = rw.OptionalString("relation_id"),
            Request = new EditRequest
            {
                CaseId = r.Id("case_id"),
                Subject = subject,
                Prompt = prompt,
                TargetNew = rw.StringOrNested("target_new", "str"),
                TargetTrue = rw.Has("target_true") ? rw.StringOrNested("target_true", "str") : null,
                ParaphrasePrompts = r.StringList("paraphrase_prompts"),
                NeighborhoodPrompts = r.StringList("neighborhood_prompts"),
            },
            AttributePrompts = r.StringList("attribute_prompts"),
            GenerationPrompts = r.StringList("generation_prompts"),
        };
    }
}
