namespace Palimpsest.Editing.Data;

/// <summary>Parses one record of ROME's known_1000 (true facts the model should answer) as a request whose TargetNew is the true attribute.</summary>
internal static class KnownFactRecords
{
    // {"known_id", "subject", "attribute", "template" ("{} is located in the continent"), "prompt" (filled,
    // may extend the template: "... continent of"), "relation_id"}. The prompt is what the attribute
    // follows (ROME's causal tracing reads it), so it wins over the template when present.
    public static DatasetRecord Known(RecordFields r)
    {
        string subject = r.String("subject");
        string attribute = r.String("attribute").Trim();
        string prompt = r.Has("prompt") ? r.TemplateFrom("prompt", r.String("prompt"), subject) : r.String("template");
        if (!prompt.Contains("{}")) throw r.Error("template", $"has no '{{}}' for the subject: \"{prompt}\"");
        return new DatasetRecord
        {
            Format = DatasetFormat.KnownFacts,
            RelationId = r.OptionalString("relation_id"),
            Request = new EditRequest
            {
                CaseId = r.Id("known_id"),
                Subject = subject,
                Prompt = prompt,
                TargetNew = attribute,
                TargetTrue = attribute,
            },
        };
    }
}
