using System.Globalization;
using Palimpsest.Backends.Cpu;
using Palimpsest.Evaluation;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Cli;

/// <summary>`eval --fluency`: the papers' generation entropy, from each record's generation prompts.</summary>
public class CliEvalFluencyTests
{
    private static readonly string[][] Prompts = [["Danielle Darrieux's mother tongue is", "Where Danielle Darrieux is from, people speak"], ["Edwin of Northumbria worshipped"]];

    // two ROME-layout CounterFact records with generation prompts
    private static string Dataset(TinyGpt2Folder m)
    {
        string file = m.PathIn("cf-rome.json");
        string Q(string s) => "\"" + s + "\"";
        File.WriteAllText(file, $$"""
            [{"case_id": 0, "requested_rewrite": {"prompt": "The mother tongue of {} is", "relation_id": "P103", "target_new": {"str": "English", "id": "Q1860"}, "target_true": {"str": "French", "id": "Q150"}, "subject": "Danielle Darrieux"},
              "paraphrase_prompts": ["Danielle Darrieux speaks"], "neighborhood_prompts": ["The mother tongue of Léon Blum is"], "attribute_prompts": [], "generation_prompts": [{{string.Join(", ", Prompts[0].Select(Q))}}]},
             {"case_id": 1, "requested_rewrite": {"prompt": "The official religion of {} is", "relation_id": "P140", "target_new": {"str": "Islam", "id": "Q432"}, "target_true": {"str": "Christianity", "id": "Q5043"}, "subject": "Edwin of Northumbria"},
              "paraphrase_prompts": ["Edwin of Northumbria follows"], "neighborhood_prompts": ["The official religion of Penda is"], "attribute_prompts": [], "generation_prompts": [{{string.Join(", ", Prompts[1].Select(Q))}}]}]
            """);
        return file;
    }

    [Fact]
    public void Eval_reports_the_mean_generation_entropy_of_the_records()
    {
        using var m = new TinyGpt2Folder();
        var r = CliRunner.Run("eval", m.Model, "--dataset", Dataset(m), "--fluency");
        Assert.True(r.Code == 0, r.ToString());
        string line = r.Out.Split('\n').Single(l => l.StartsWith("generation entropy (fluency):", StringComparison.Ordinal));
        Assert.Contains("over 2 record(s)", line);
        double reported = double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[3], CultureInfo.InvariantCulture);

        // the same model on the same float32 CPU backend, each record's prompts scored as ROME does
        using var backend = new SimdBackend();
        using var model = Model.Load(m.Model, backend);
        using var tf = new Transformer(model);
        var tok = TokenizerFactory.Gpt2(model.Config);
        double expected = Prompts.Average(p => Fluency.GenerationEntropy(tf, tok, p));
        Assert.Equal(expected, reported, 5.1e-5); // printed with 4 decimals
    }

    [Fact]
    public void Fluency_needs_generation_prompts()
    {
        using var m = new TinyGpt2Folder();
        // the folder's own dataset is in EasyEdit's layout, which has none
        CliRunner.AssertBadInput(CliRunner.Run("eval", m.Model, "--dataset", m.Dataset, "--fluency"), "generation prompts");
        Assert.DoesNotContain("generation entropy", CliRunner.Run("eval", m.Model, "--dataset", Dataset(m)).Out);
    }
}
