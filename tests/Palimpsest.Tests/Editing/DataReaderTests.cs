using Palimpsest.Editing.Data;

namespace Palimpsest.Tests.Editing;

public sealed class DataReaderTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("palimpsest-data-").FullName;

    public void Dispose() => Directory.Delete(_tmp, recursive: true);

    private string Write(string name, string json)
    {
        string p = Path.Combine(_tmp, name);
        File.WriteAllText(p, json);
        return p;
    }

    private const string EasyEditRecord =
        """{"case_id": 0, "prompt": "The mother tongue of Danielle Darrieux is", "target_new": "English", "subject": "Danielle Darrieux", "ground_truth": "French", "rephrase_prompt": "Where Danielle Darrieux is from, people speak the language of", "locality_prompt": "Michel Rocard is a native speaker of", "locality_ground_truth": "French"}""";

    [Fact]
    public void EasyEdit_PromptBecomesTemplateAndTargetsStayWithoutSpace()
    {
        var r = DatasetReader.Load(Write("cf.json", $"[{EasyEditRecord}]")).Single();
        Assert.Equal("The mother tongue of {} is", r.Prompt);
        Assert.Equal("Danielle Darrieux", r.Subject);
        Assert.Equal("English", r.TargetNew);
        Assert.Equal("French", r.TargetTrue);
        Assert.Equal("0", r.CaseId);
        Assert.Equal(["Where Danielle Darrieux is from, people speak the language of"], r.ParaphrasePrompts);
        Assert.Equal(["Michel Rocard is a native speaker of"], r.NeighborhoodPrompts);
        Assert.Equal("French", r.NeighborhoodAnswer);
        Assert.Equal("The mother tongue of Danielle Darrieux is", r.FilledPrompt);
    }

    [Fact]
    public void EasyEdit_OnlyTheSubjectsFirstOccurrenceIsReplaced()
    {
        string rec = """{"case_id": 3, "prompt": "Paris Hilton said Paris Hilton is", "target_new": "x", "subject": "Paris Hilton"}""";
        var r = DatasetReader.Load(Write("cf.json", $"[{rec}]")).Single();
        Assert.Equal("{} said Paris Hilton is", r.Prompt);
    }

    [Fact]
    public void EasyEdit_SubjectMissingFromPrompt_NamesFileRecordAndField()
    {
        string bad = EasyEditRecord.Replace("\"subject\": \"Danielle Darrieux\"", "\"subject\": \"Édith Piaf\"");
        var e = Assert.Throws<DatasetFormatException>(() => DatasetReader.Load(Write("cf-bad.json", $"[{EasyEditRecord}, {bad}]")));
        Assert.Contains("cf-bad.json: record 1, field 'prompt'", e.Message);
        Assert.Contains("Édith Piaf", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void MissingField_WrongType_AndBrokenJson_GiveOneClearLine()
    {
        string noTarget = EasyEditRecord.Replace("\"target_new\": \"English\", ", "\"target_new\": 5, ");
        var e1 = Assert.Throws<DatasetFormatException>(() => DatasetReader.Load(Write("a.json", $"[{EasyEditRecord}, {noTarget}]")));
        Assert.Equal("a.json: record 1, field 'target_new': expected a string, found number", e1.Message);

        string noSubject = EasyEditRecord.Replace("\"subject\": \"Danielle Darrieux\", ", "");
        var e2 = Assert.Throws<DatasetFormatException>(() => DatasetReader.Load(Write("b.json", $"[{EasyEditRecord}, {noSubject}]")));
        Assert.Equal("b.json: record 1, field 'subject': missing", e2.Message);

        var e3 = Assert.Throws<DatasetFormatException>(() => DatasetReader.Load(Write("c.json", $"[{EasyEditRecord}, {{\"case_id\": ")));
        Assert.StartsWith("c.json: record 1: malformed JSON", e3.Message);

        var e4 = Assert.Throws<DatasetFormatException>(() => DatasetReader.Load(Write("d.json", EasyEditRecord)));
        Assert.StartsWith("d.json", e4.Message);
        Assert.Contains("array", e4.Message);

        var e5 = Assert.Throws<DatasetFormatException>(() => DatasetReader.Load(Write("e.json", """[{"foo": 1}]""")));
        Assert.StartsWith("e.json: record 0: unknown dataset format", e5.Message);

        var e6 = Assert.Throws<DatasetFormatException>(() => DatasetReader.Load(Write("f.json", "[]")));
        Assert.Equal("f.json: holds no records", e6.Message);

        var e7 = Assert.Throws<DatasetFormatException>(() => DatasetReader.Load(Write("g.json", """[{"requested_rewrite": {"prompt": "{} is", "subject": "X", "target_new": {"id": "Q1"}}}]""")));
        Assert.Equal("g.json: record 0, field 'requested_rewrite.target_new.str': missing", e7.Message);

        var e8 = Assert.Throws<DatasetFormatException>(() => DatasetReader.Load(Write("h.json", """[{"requested_rewrite": {"prompt": "{} is {}", "subject": "X", "target_new": "Y"}}]""")));
        Assert.StartsWith("h.json: record 0: ", e8.Message);
        Assert.Contains("exactly one '{}'", e8.Message);

        Assert.Throws<FileNotFoundException>(() => DatasetReader.Load(Path.Combine(_tmp, "none.json")));
    }

    [Fact]
    public void Limit_StopsBeforeAMalformedTail()
    {
        // Streaming: records past the limit are never parsed.
        var list = DatasetReader.Load(Write("cf.json", $"[{EasyEditRecord}, {EasyEditRecord}, {{\"broken\": "), limit: 2);
        Assert.Equal(2, list.Count);
    }

    [Fact]
    public void RomeFormat_ZsreAndKnownFacts_AreDetectedAndMapped()
    {
        string rome = """[{"case_id": 7, "requested_rewrite": {"prompt": "The mother tongue of {} is", "relation_id": "P103", "target_new": {"str": "English", "id": "Q1860"}, "target_true": {"str": "French", "id": "Q150"}, "subject": "Danielle Darrieux"}, "paraphrase_prompts": ["p1", "p2"], "neighborhood_prompts": ["n1"], "attribute_prompts": ["a1"], "generation_prompts": ["g1", "g2"]}]""";
        var rr = DatasetReader.LoadRecords(Write("rome.json", rome)).Single();
        Assert.Equal(DatasetFormat.CounterFactRome, rr.Format);
        Assert.Equal("The mother tongue of {} is", rr.Request.Prompt);
        Assert.Equal(("English", "French"), (rr.Request.TargetNew, rr.Request.TargetTrue));
        Assert.Equal(["p1", "p2"], rr.Request.ParaphrasePrompts);
        Assert.Equal(["n1"], rr.Request.NeighborhoodPrompts);
        Assert.Null(rr.Request.NeighborhoodAnswer);
        Assert.Equal(["g1", "g2"], rr.GenerationPrompts);
        Assert.Equal("P103", rr.RelationId);

        string zsre = """[{"subject": "UniFirst", "src": "What is the product made by UniFirst?", "pred": "uniform", "rephrase": "What will be the product of UniFirst?", "alt": "unmanned aircraft", "answers": ["uniform"], "loc": "nq question: john goodman's character in the big lebowski", "loc_ans": "Walter Sobchak", "cond": "x"}]""";
        var z = DatasetReader.LoadRecords(Write("zsre.json", zsre)).Single();
        Assert.Equal(DatasetFormat.Zsre, z.Format);
        Assert.Equal("What is the product made by {}?", z.Request.Prompt);
        Assert.Equal(("unmanned aircraft", "uniform"), (z.Request.TargetNew, z.Request.TargetTrue));
        Assert.Equal(["What will be the product of UniFirst?"], z.Request.ParaphrasePrompts);
        Assert.Equal(["nq question: john goodman's character in the big lebowski?"], z.Request.NeighborhoodPrompts);
        Assert.Equal("Walter Sobchak", z.Request.NeighborhoodAnswer);
        Assert.Equal("0", z.Request.CaseId);

        string known = """[{"known_id": 0, "subject": "Vinson Massif", "attribute": "Antarctica", "template": "{} is located in the continent", "prediction": " of Antarctica.", "prompt": "Vinson Massif is located in the continent of", "relation_id": "P30"}]""";
        var k = DatasetReader.LoadRecords(Write("known.json", known)).Single();
        Assert.Equal(DatasetFormat.KnownFacts, k.Format);
        Assert.Equal("{} is located in the continent of", k.Request.Prompt);
        Assert.Equal(("Antarctica", "Antarctica"), (k.Request.TargetNew, k.Request.TargetTrue));
    }

    [Fact]
    public void SharedDatasets_AllRecordsParse()
    {
        string dir = Paths.SharedOrSkip("datasets");
        var cf = DatasetReader.LoadRecords(Path.Combine(dir, "counterfact", "counterfact-edit.json"));
        Assert.Equal(10000, cf.Count);
        Assert.All(cf, r => Assert.Equal(DatasetFormat.CounterFactEasyEdit, r.Format));
        var rome = DatasetReader.LoadRecords(Path.Combine(dir, "counterfact", "counterfact-rome-format-275.json"));
        Assert.Equal(275, rome.Count);
        Assert.Equal("The mother tongue of {} is", rome[0].Request.Prompt);
        Assert.Equal(10, rome[0].Request.NeighborhoodPrompts.Count);
        Assert.NotEmpty(rome[0].GenerationPrompts);
        string zPath = Path.Combine(dir, "zsre", "zsre_mend_train-1k.json");
        // Two records have an empty "alt": strict loading names the first; with a skip handler both are left out.
        var strict = Assert.Throws<DatasetFormatException>(() => DatasetReader.LoadRecords(zPath));
        Assert.Equal("zsre_mend_train-1k.json: record 534, field 'alt': is empty", strict.Message);
        var skips = new List<DatasetFormatException>();
        var z = DatasetReader.LoadRecords(zPath, skipped: skips.Add);
        Assert.Equal([534, 723], skips.Select(e => e.Record));
        Assert.Equal(998, z.Count);
        Assert.All(z, r => Assert.Equal(DatasetFormat.Zsre, r.Format));
        var k = DatasetReader.LoadRecords(Path.Combine(dir, "counterfact", "known_1000.json"));
        Assert.Equal(1209, k.Count);
        Assert.All(k, r => Assert.Contains("{}", r.Request.Prompt));
    }
}
