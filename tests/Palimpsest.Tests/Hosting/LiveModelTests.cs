using System.Collections.Concurrent;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Hosting;
using Palimpsest.Journal;
using Palimpsest.Runtime;
using Palimpsest.Tests.Journal;
using Palimpsest.Tokenization;
using Xunit;

namespace Palimpsest.Tests.Hosting;

public class LiveModelTests
{
    private static string Model => Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5");

    private static LiveModelOptions Options(TempDir tmp) => new() { LowPriorityEdits = false /* the suite fills both cores: a nice-19 edit would crawl */, Streams = 2, KeyStatsCache = tmp.Sub("keystats") };

    /// <summary>
    /// While three clients decode without pause, edits and reverts land. Every completion must be
    /// exactly what one version alone produces for its prompt — recomputed afterwards on a folder
    /// holding only that version's active edits — and every retired version must be freed.
    /// </summary>
    [Fact]
    public async Task Completions_see_one_version_each_while_edits_and_reverts_land()
    {
        using var tmp = JournalFixtures.NewTemp();
        string dir = tmp.Sub("served");
        EditedModel.Create(Model, dir).Dispose();
        var facts = DatasetReader.Load(Path.Combine(Model, "requests.json"), 3);
        string[] prompts = [.. facts.Select(f => f.FilledPrompt), "Clara Marlowe competes in"];
        var seen = new ConcurrentBag<(string Prompt, long Version, int[] Ids)>();
        // the active edits after each version was published (version -> edit ids), as the writer made them
        var active = new Dictionary<long, long[]>();
        using (var live = LiveModel.Open(dir, Options(tmp)))
        {
            active[live.Version] = [];
            using var stop = new CancellationTokenSource();
            var clients = Enumerable.Range(0, 3).Select(c => Task.Run(() =>
            {
                for (int i = 0; !stop.IsCancellationRequested; i++)
                {
                    string p = prompts[(i + c) % prompts.Length];
                    var r = live.Complete(new CompletionRequest { Prompt = p, MaxTokens = 6, Temperature = 0 });
                    seen.Add((p, r.Version, r.TokenIds));
                }
            })).ToArray();

            var ids = new List<long>();
            foreach (var f in facts)
            {
                var e = live.Edit([f], "rome", cancel: TestContext.Current.CancellationToken);
                ids.Add(e.Id);
                active[e.Version] = [.. ids];
            }
            foreach (long id in new[] { ids[1], ids[0] })
            {
                var r = live.Revert(id, TestContext.Current.CancellationToken);
                ids.Remove(id);
                active[r.Version] = [.. ids];
            }
            stop.Cancel();
            await Task.WhenAll(clients);
            Assert.Equal(1, live.Weights.LiveVersions);
            Assert.Equal(active.Count - 1, live.Weights.FreedVersions);
        }

        // what each version alone answers, on a folder holding only that version's active edits
        var expected = new Dictionary<(long, string), int[]>();
        using (var served = EditedModel.Open(dir))
            foreach (long v in seen.Select(s => s.Version).Distinct())
            {
                string refDir = tmp.Sub($"version-{v}");
                using (var em = EditedModel.Create(Model, refDir))
                    foreach (long id in active[v])
                        em.Apply(served.DeltasOf(id), new EditRecord { Method = "rome", Requests = [facts[0]], HyperParametersJson = "{}" });
                using var backend = new SimdBackend();
                using var model = Palimpsest.Runtime.Model.Load(refDir, backend);
                using var tf = new Transformer(model);
                var tok = TokenizerFactory.ForModel(refDir, model.Config);
                foreach (var p in prompts)
                    expected[(v, p)] = new Generator(tf).Generate(tok.Encode(p), 6, null, tok.EosId).Where(t => t != tok.EosId).ToArray();
            }
        Assert.True(seen.Select(s => s.Version).Distinct().Count() >= 3, $"the clients saw only versions {string.Join(",", seen.Select(s => s.Version).Distinct())}");
        // the test can tell versions apart: some prompt's answer differs between two versions
        Assert.Contains(prompts, p => expected.Where(kv => kv.Key.Item2 == p).Select(kv => string.Join(",", kv.Value)).Distinct().Count() > 1);
        foreach (var (p, v, got) in seen)
            Assert.True(expected[(v, p)].SequenceEqual(got),
                $"\"{p}\" on version {v}: served [{string.Join(",", got)}], version {v} alone gives [{string.Join(",", expected[(v, p)])}]");
    }

    [Fact]
    public async Task Warming_makes_the_editor_before_any_edit_and_names_a_bad_method()
    {
        using var tmp = JournalFixtures.NewTemp();
        string dir = tmp.Sub("served");
        EditedModel.Create(Model, dir).Dispose();
        using var live = LiveModel.Open(dir, Options(tmp));
        Assert.False(Directory.Exists(tmp.Sub("keystats")) && Directory.EnumerateFiles(tmp.Sub("keystats")).Any());
        double seconds = await live.WarmAsync("rome");
        Assert.True(seconds > 0);
        // the key statistics of ROME's layer are computed (and cached) before any edit; nothing is applied
        Assert.Single(Directory.EnumerateFiles(tmp.Sub("keystats"), "keystats-l0-*"));
        Assert.Empty(live.Journal());
        Assert.Equal(0, live.Version);
        var e = await Assert.ThrowsAsync<EditRejectedException>(() => live.WarmAsync("romee"));
        Assert.StartsWith("method: 'romee'", e.Message);
    }
}
