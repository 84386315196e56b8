using System.Text.Json;
using Palimpsest.Editing.Data;
using Palimpsest.Tests.Journal;
using Palimpsest.Tokenization;
using Palimpsest.Training;

namespace Palimpsest.Tests.Training;

public class FactsFileTests
{
    private static FactsFile Parse(string json) => FactsFile.Parse(JsonDocument.Parse(json).RootElement, "facts.json");

    [Theory]
    [InlineData("""{"facts": []}""", "field 'relations' must be an array")]
    [InlineData("""{"relations": [{"id": "r", "templates": ["{} is"]}], "facts": []}""", "relations[0]: needs at least 2 templates")]
    [InlineData("""{"relations": [{"id": "r", "templates": ["{} is", "no subject"]}], "facts": []}""", "relations[0].templates[1]: must contain '{}' exactly once")]
    [InlineData("""{"relations": [{"id": "r", "templates": ["{} is ", "x {}"]}], "facts": []}""", "must not end with a space")]
    [InlineData("""{"relations": [{"id": "r", "templates": ["{} is", "x {}"]}], "facts": [{"subject": "A", "relation": "q", "answer": "B"}]}""", "facts[0]: unknown relation 'q'")]
    [InlineData("""{"relations": [{"id": "r", "templates": ["{} is", "x {}"]}], "facts": [{"subject": "A", "relation": "r"}]}""", "facts[0]: field 'answer' must be a non-empty string")]
    [InlineData("""{"relations": [{"id": "r", "templates": ["{} is", "x {}"]}], "facts": [{"subject": "A", "relation": "r", "answer": "B"}, {"subject": "A", "relation": "r", "answer": "C"}]}""", "facts[1]: duplicate fact")]
    public void Malformed_files_name_the_field(string json, string expected)
    {
        var e = Assert.Throws<FormatException>(() => Parse(json));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("facts.json: ", e.Message);
    }

    [Fact]
    public void The_committed_well_known_facts_load_and_every_relation_has_four_phrasings()
    {
        var f = FactsFile.Load(Path.Combine(Paths.RepoRoot, "data", "facts", "well-known-facts.json"));
        Assert.True(f.Facts.Count >= 300, $"{f.Facts.Count} facts");
        Assert.All(f.Relations, r => Assert.Equal(4, r.Templates.Count));
    }

    [Fact]
    public void Synthetic_world_is_deterministic_and_people_are_unique()
    {
        var a = SyntheticWorld.Create(50, 4, seed: 7); var b = SyntheticWorld.Create(50, 4, seed: 7);
        Assert.Equal(a.Facts, b.Facts);
        Assert.Equal(200, a.Facts.Count);
        Assert.Equal(50, a.Facts.Select(x => x.Subject).Distinct().Count());
        Assert.NotEqual(a.Facts, SyntheticWorld.Create(50, 4, seed: 8).Facts);
    }

    [Fact]
    public void Each_fact_holds_out_one_phrasing_and_its_edit_request_uses_it_as_the_paraphrase()
    {
        var world = SyntheticWorld.Create(30, 3, seed: 1);
        var tok = TokenizerFactory.Gpt2(Palimpsest.Models.ModelConfig.Parse(JsonDocument.Parse("""{"model_type": "gpt2", "n_embd": 8, "n_head": 2, "n_layer": 1, "n_positions": 32, "vocab_size": 50257}""").RootElement));
        var ex = new FactExamples(world, tok, seed: 2);
        Assert.Equal(world.Facts.Count, ex.HeldOut.Count);
        Assert.Equal(world.Facts.Count * 3, ex.Train.Count); // 4 phrasings per relation, one held out
        // a held-out (fact, phrasing) pair never appears among the training examples
        var train = ex.Train.Select(e => (e.FactIndex, string.Join(",", e.Prompt))).ToHashSet();
        Assert.All(ex.HeldOut, h => Assert.DoesNotContain((h.FactIndex, string.Join(",", h.Prompt)), train));
        using var tmp = new TempDir();
        string path = Path.Combine(tmp.Path, "requests.json");
        ex.WriteRequests(path);
        var reqs = DatasetReader.Load(path);
        Assert.Equal(world.Facts.Count, reqs.Count);
        var heldText = ex.HeldOut.Select(h => tok.Decode(h.Prompt)).ToHashSet();
        Assert.All(reqs, r =>
        {
            Assert.Contains(r.ParaphrasePrompts[0], heldText);
            Assert.NotEqual(r.TargetTrue, r.TargetNew);
            Assert.DoesNotContain(r.Subject, r.NeighborhoodPrompts[0]);
        });
    }
}
