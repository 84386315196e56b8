namespace Palimpsest.Editing.Data;

/// <summary>Parses one zsRE record (MEND split, as ROME and EasyEdit ship it).</summary>
internal static class ZsreRecords
{
    // {"subject", "src" (question), "alt" (new answer), "answers" [true], "rephrase", "loc", "loc_ans"}
    // As EasyEdit reads it: target_new = alt, ground truth = answers[0]. The neighbourhood prompt is
    // ROME's `loc + "?"` whose answer is loc_ans, scored token by token (teacher-forced).
    public static DatasetRecord Zsre(RecordFields r, int index)
    {
        string subject = r.String("subject");
        string question = r.String("src");
        var loc = r.StringList("loc");
        return new DatasetRecord
        {
            Format = DatasetFormat.Zsre,
            Request = new EditRequest
            {
                CaseId = r.Id("case_id") ?? index.ToString(System.Globalization.CultureInfo.InvariantCulture),
                Subject = subject,
                Prompt = r.TemplateFrom("src", question, subject),
                TargetNew = r.StringOrOnly("alt"),
                TargetTrue = r.Has("answers") ? r.StringOrFirst("answers") : null,
                ParaphrasePrompts = r.StringList("rephrase"),
                NeighborhoodPrompts = loc.Select(q => q + "?").ToArray(),
                NeighborhoodAnswer = r.Has("loc_ans") ? r.StringOrFirst("loc_ans") : null,
            },
        };
    }
}
