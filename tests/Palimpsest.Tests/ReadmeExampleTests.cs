using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Journal;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests;

/// <summary>README's C# lines, run as written (smaller corpus and fewer v* steps so it stays fast).</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void The_readme_library_example_runs_and_reverts_exactly()
    {
        var folder = Paths.SharedOrSkip("models/cf5k-gpt2-d128-l6");
        var facts = Paths.SharedOrSkip("datasets/counterfact/counterfact-edit.json");
        var work = Directory.CreateTempSubdirectory("palimpsest-readme-").FullName;
        try
        {
            using var backend = new SimdBackend();
            using var model = Model.Load(folder, backend);
            using var tf = new Transformer(model);
            var tok = TokenizerFactory.ForModel(folder, model.Config);

            int[] ids = tok.EncodePrompt("The mother tongue of Danielle Darrieux is");
            int[] next = new Generator(tf).Generate(ids, maxTokens: 1);
            Assert.Equal(" French", tok.Decode(next));

            var corpus = Corpus.FactSentences(facts, tok, 0..200);
            var stats = KeyStatisticsCache.GetOrCompute(tf, corpus, [2], Path.Combine(work, "keystats"), cancel: TestContext.Current.CancellationToken);
            var rome = new Rome(new RomeHparams { Layers = [2], VLossLayer = model.Config.Layers - 1, VNumGradSteps = 3, ContextTemplateLengthParams = [[5, 2]] },
                tok, l => stats[l].Matrix);
            var request = new EditRequest { Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English" };
            var deltas = rome.ComputeDeltas(tf, [request]);

            var before = new float[model.Params.Blocks[2].WDown.Length]; backend.ToHost(model.Params.Blocks[2].WDown, before);
            var saved = deltas.Select(d => (d.Layer, Old: model.ApplyDelta(d))).ToList();
            int[] answer = new Generator(tf).Generate(ids, maxTokens: 1);
            Assert.Single(answer);
            foreach (var (layer, old) in Enumerable.Reverse(saved)) model.SetDownProjection(layer, old);
            var after = new float[before.Length]; backend.ToHost(model.Params.Blocks[2].WDown, after);
            Assert.Equal(before, after);

            using var edited = EditedModel.Create(folder, Path.Combine(work, "edited"));
            long id = edited.Apply(deltas, new EditRecord { Method = rome.Method, Requests = [request], HyperParametersJson = rome.Hparams.ToJson() });
            Assert.Single(edited.List());
            edited.Revert(id);
            Assert.True(edited.List().Single().Reverted);
        }
        finally { Directory.Delete(work, recursive: true); }
    }
}

/// <summary>README's command lines between the try-it markers, run as written (the CLI in-process; /tmp paths made unique).</summary>
public class ReadmeCommandLineTests
{
    [Fact]
    public void The_readme_command_lines_run_as_written()
    {
        string readme = File.ReadAllText(Path.Combine(Paths.RepoRoot, "README.md"));
        int from = readme.IndexOf("<!-- try-it -->", StringComparison.Ordinal), to = readme.IndexOf("<!-- /try-it -->", StringComparison.Ordinal);
        Assert.True(from >= 0 && to > from, "README has no try-it block");
        var lines = readme[from..to].Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("./palimpsest ", StringComparison.Ordinal)).ToList();
        Assert.True(lines.Count >= 5, $"only {lines.Count} command lines in README's try-it block");
        string tmp = Directory.CreateTempSubdirectory("palimpsest-readme-cli-").FullName;
        try
        {
            foreach (var line in lines)
            {
                // paths relative to the repository root made absolute (tests run in parallel: the working directory is not ours to change)
                var args = Split(line)[1..].Select(a => a.Replace("/tmp/", tmp + "/", StringComparison.Ordinal))
                    .Select(a => a.StartsWith("data/", StringComparison.Ordinal) ? Path.Combine(Paths.RepoRoot, a) : a).ToArray();
                var r = Cli.CliRunner.Run(args);
                Assert.True(r.Code == 0, $"{line}\n{r}");
            }
        }
        finally
        {
            Directory.Delete(tmp, recursive: true);
        }
    }

    // shell words: spaces separate, double quotes group
    private static string[] Split(string line) =>
        System.Text.RegularExpressions.Regex.Matches(line, "\"([^\"]*)\"|(\\S+)").Select(m => m.Groups[1].Success ? m.Groups[1].Value : m.Groups[2].Value).ToArray();
}

/// <summary>README's "Embed it" lines are samples/host's lines (that sample runs in CI through ./build.sh sample).</summary>
public class ReadmeEmbedTests
{
    [Fact]
    public void Every_line_of_the_embed_example_is_a_line_of_the_host_sample()
    {
        string readme = File.ReadAllText(Path.Combine(Paths.RepoRoot, "README.md"));
        int section = readme.IndexOf("## Embed it", StringComparison.Ordinal);
        Assert.True(section >= 0, "README has no Embed it section");
        int from = readme.IndexOf("```csharp\n", section, StringComparison.Ordinal) + "```csharp\n".Length;
        string[] example = [.. Code(readme[from..readme.IndexOf("```", from, StringComparison.Ordinal)])];
        var sample = Code(File.ReadAllText(Path.Combine(Paths.RepoRoot, "samples", "host", "Program.cs"))).ToHashSet();
        Assert.True(example.Length >= 8, $"only {example.Length} lines in README's Embed it example");
        Assert.All(example, line => Assert.Contains(line, sample));
    }

    /// <summary>The non-empty lines, trimmed, without their // comments.</summary>
    private static IEnumerable<string> Code(string text) =>
        text.Split('\n').Select(l => (l.Contains("//", StringComparison.Ordinal) ? l[..l.IndexOf("//", StringComparison.Ordinal)] : l).Trim()).Where(l => l.Length > 0);
}
