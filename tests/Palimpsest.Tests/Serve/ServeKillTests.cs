using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing.Data;
using Palimpsest.Journal;
using Palimpsest.Runtime;
using Palimpsest.Tests.Journal;
using Palimpsest.Tokenization;
using Xunit;

namespace Palimpsest.Tests.Serve;

/// <summary>
/// `serve` in a real child process, killed (SIGKILL) at random moments while edits and reverts
/// arrive, then restarted: every acknowledged edit and revert is in the journal, and what the
/// restarted server answers is what the journal's state answers — computed apart, on a copy of the
/// folder recovered on its own and loaded fresh.
/// </summary>
public partial class ServeKillTests
{
    [Fact]
    public async Task Killed_server_restarts_on_the_journals_state_with_nothing_acknowledged_lost()
    {
        using var tmp = JournalFixtures.NewTemp();
        string dir = tmp.Sub("served"), cache = tmp.Sub("keystats"), tokenFile = tmp.Sub("token");
        File.WriteAllText(tokenFile, ServeFixture.Token);
        EditedModel.Create(ServeFixture.Model, dir).Dispose();
        var facts = DatasetReader.Load(Path.Combine(ServeFixture.Model, "requests.json"), 6);
        string[] prompts = facts.Select(f => f.FilledPrompt).ToArray();
        var ackedEdits = new HashSet<long>();
        var ackedReverts = new HashSet<long>();
        var rng = new Random(5);
        int next = 0;
        for (int round = 0; round < 4; round++)
        {
            // the journal's state, from a copy recovered on its own (nothing runs on the folder now)
            var (journal, expected) = Reference(dir, tmp.Sub($"copy-{round}"), prompts);
            using var child = Start(dir, tokenFile, cache, out string url);
            using var reaper = new Reaper(child); // the last round (and a failed assertion) ends without the kill below: Dispose alone leaves the server running
            using var http = new HttpClient { BaseAddress = new Uri(url), Timeout = TimeSpan.FromMinutes(2) };
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ServeFixture.Token);

            var served = JsonDocument.Parse(await http.GetStringAsync("/v1/edits", TestContext.Current.CancellationToken)).RootElement.GetProperty("data")
                .EnumerateArray().Select(e => (Id: e.GetProperty("id").GetInt64(), Reverted: e.GetProperty("reverted").GetBoolean())).ToList();
            Assert.Equal(journal, served);
            foreach (long id in ackedEdits) Assert.True(served.Any(e => e.Id == id), $"round {round}: acknowledged edit {id} is not in the journal");
            foreach (long id in ackedReverts) Assert.True(served.Single(e => e.Id == id).Reverted, $"round {round}: acknowledged revert of edit {id} was lost");
            for (int i = 0; i < prompts.Length; i++)
            {
                var r = await http.PostAsync("/v1/completions", Json(new { prompt = prompts[i], max_tokens = 3, temperature = 0 }), TestContext.Current.CancellationToken);
                string text = JsonDocument.Parse(await r.Content.ReadAsStringAsync(TestContext.Current.CancellationToken)).RootElement.GetProperty("choices")[0].GetProperty("text").GetString()!;
                Assert.True(expected[i] == text, $"round {round}: \"{prompts[i]}\" served \"{text}\", the journal's state answers \"{expected[i]}\"");
            }
            if (round == 3) break;

            // edits and reverts until the kill
            var active = served.Where(e => !e.Reverted).Select(e => e.Id).ToList();
            using var stop = new CancellationTokenSource();
            var writer = Task.Run(async () =>
            {
                try
                {
                    while (!stop.IsCancellationRequested)
                    {
                        if (active.Count >= 2 || (active.Count > 0 && rng.Next(3) == 0))
                        {
                            long id = active[0];
                            var r = await http.DeleteAsync($"/v1/edits/{id}", stop.Token);
                            if (r.IsSuccessStatusCode) { ackedReverts.Add(id); active.Remove(id); }
                        }
                        else
                        {
                            var f = facts[next++ % facts.Count];
                            var r = await http.PostAsync("/v1/edits", Json(new { subject = f.Subject, prompt = f.Prompt, target_new = f.TargetNew }), stop.Token);
                            if (r.IsSuccessStatusCode)
                            {
                                long id = JsonDocument.Parse(await r.Content.ReadAsStringAsync(stop.Token)).RootElement.GetProperty("id").GetInt64();
                                ackedEdits.Add(id); active.Add(id);
                            }
                        }
                    }
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException) { /* the server was killed mid-request: not acknowledged */ }
            }, TestContext.Current.CancellationToken);
            // one acknowledged write per round at least (a fresh server's first edit prepares ROME's templates), then a kill at a random moment
            int before = ackedEdits.Count + ackedReverts.Count;
            var deadline = DateTime.UtcNow.AddSeconds(90);
            while (ackedEdits.Count + ackedReverts.Count == before && !writer.IsCompleted && DateTime.UtcNow < deadline) Thread.Sleep(20);
            Thread.Sleep(rng.Next(3000));
            child.Kill(entireProcessTree: true);
            child.WaitForExit();
            stop.Cancel();
            await writer;
        }
        Assert.True(ackedEdits.Count >= 2 && ackedReverts.Count >= 1, $"the kills came too early to test much: {ackedEdits.Count} edits, {ackedReverts.Count} reverts acknowledged");
    }

    /// <summary>Kills the child's process tree when disposed, if it is still running.</summary>
    private sealed class Reaper(Process child) : IDisposable
    {
        public void Dispose()
        {
            try
            {
                if (child.HasExited) return;
                child.Kill(entireProcessTree: true);
                child.WaitForExit();
            }
            catch (InvalidOperationException) { /* it exited meanwhile */ }
        }
    }

    private static StringContent Json(object body) => new(JsonSerializer.Serialize(body), Encoding.UTF8, "application/json");

    // the journal (id, reverted) and the greedy answers of a copy of the folder, recovered by opening it and loaded from scratch
    private static (List<(long, bool)> Journal, string[] Answers) Reference(string dir, string copy, string[] prompts)
    {
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(dir)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        List<(long, bool)> journal;
        using (var em = EditedModel.Open(copy)) journal = em.List().Select(e => (e.Id, e.Reverted)).ToList();
        using var backend = new SimdBackend();
        using var model = Model.Load(copy, backend);
        using var tf = new Transformer(model);
        var tok = TokenizerFactory.ForModel(copy, model.Config);
        var answers = prompts.Select(p => new Generator(tf).GreedyText(tok, p, 3)).ToArray();
        return (journal, answers);
    }

    private static Process Start(string dir, string tokenFile, string cache, out string url)
    {
        var psi = new ProcessStartInfo(JournalKillTests.Muxer()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "exec", Path.Combine(AppContext.BaseDirectory, "Palimpsest.Cli.dll"), "serve", dir, "--port", "0", "--token-file", tokenFile, "--cache", cache, "--edit-priority", "normal" })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var err = new StringBuilder();
        p.ErrorDataReceived += (_, e) => { lock (err) err.AppendLine(e.Data); };
        p.BeginErrorReadLine();
        var read = p.StandardOutput.ReadLineAsync();
        while (true)
        {
            if (!read.Wait(TimeSpan.FromSeconds(60)) || read.Result is null)
            {
                p.Kill(true);
                lock (err) Assert.Fail($"serve did not start: {err}");
            }
            var m = Url().Match(read.Result!);
            if (m.Success) { url = m.Value; break; }
            read = p.StandardOutput.ReadLineAsync();
        }
        // keep draining stdout so the child never blocks on a full pipe
        _ = p.StandardOutput.ReadToEndAsync();
        return p;
    }

    [GeneratedRegex(@"http://127\.0\.0\.1:\d+")]
    private static partial Regex Url();
}
