using Palimpsest.Editing;
using Palimpsest.Hosting;
using Palimpsest.Journal;
using Palimpsest.Tests.Journal;
using Xunit;

namespace Palimpsest.Tests.Hosting;

public class DecodingGateTests
{
    private static string Model => Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5");

    [Fact]
    public async Task Passes_at_once_without_decoding_and_waits_for_the_last_stream_to_end()
    {
        using var gate = new DecodingGate(TimeSpan.FromMinutes(1));
        gate.Arm();
        gate.Pass(); // nothing decodes: no wait
        Assert.Equal(TimeSpan.Zero, gate.Held);
        gate.Enter();
        gate.Enter();
        var ct = TestContext.Current.CancellationToken;
        var pass = Task.Factory.StartNew(gate.Pass, ct, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        await Task.WhenAny(pass, Task.Delay(300, ct));
        Assert.False(pass.IsCompleted, "Pass returned while two streams decode");
        gate.Exit();
        await Task.WhenAny(pass, Task.Delay(300, ct));
        Assert.False(pass.IsCompleted, "Pass returned while one stream still decodes");
        gate.Exit();
        await pass.WaitAsync(TimeSpan.FromSeconds(10), ct);
        Assert.True(gate.Held >= TimeSpan.FromMilliseconds(500), $"held {gate.Held.TotalMilliseconds} ms, expected the ~600 ms it waited");
    }

    [Fact]
    public void Holds_a_job_for_its_budget_in_all_then_lets_it_run_and_arm_renews_it()
    {
        using var gate = new DecodingGate(TimeSpan.FromMilliseconds(200));
        gate.Arm();
        gate.Enter(); // a stream that never ends
        var t = System.Diagnostics.Stopwatch.StartNew();
        gate.Pass();
        Assert.InRange(t.Elapsed.TotalMilliseconds, 190, 5_000);
        t.Restart();
        gate.Pass(); // budget spent: no more holding in this job
        gate.Pass();
        Assert.True(t.Elapsed.TotalMilliseconds < 100, $"a spent budget still held {t.Elapsed.TotalMilliseconds} ms");
        gate.Arm(); // the next job is held again
        t.Restart();
        gate.Pass();
        Assert.InRange(t.Elapsed.TotalMilliseconds, 190, 5_000);
    }

    /// <summary>
    /// With EditsYieldToDecoding an edit computes only while no completion decodes: one held on its
    /// first piece of text (its onText blocks the stream) keeps an edit from finishing until it is
    /// let go; with a short hold budget the edit finishes while the completion still decodes.
    /// Without the gate the warm editor's ROME edit takes about a second here.
    /// </summary>
    [Theory]
    [InlineData(60_000)]
    [InlineData(300)]
    public async Task An_edit_waits_for_decoding_completions_for_at_most_its_hold(int holdMs)
    {
        using var tmp = JournalFixtures.NewTemp();
        string dir = tmp.Sub("served");
        EditedModel.Create(Model, dir).Dispose();
        var ct = TestContext.Current.CancellationToken;
        var options = new LiveModelOptions
        {
            LowPriorityEdits = false, Streams = 2, KeyStatsCache = tmp.Sub("keystats"),
            EditsYieldToDecoding = true, MaxEditHold = TimeSpan.FromMilliseconds(holdMs),
        };
        using var live = LiveModel.Open(dir, options);
        await live.WarmAsync("rome"); // key statistics and templates: the edit below is only its own computation
        long before = live.Version;

        using var decoding = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var completion = live.CompleteAsync(new CompletionRequest { Prompt = "Clara Marlowe competes in", MaxTokens = 4, Temperature = 0, IgnoreEos = true },
            _ => { decoding.Set(); release.Wait(); }, ct);
        Assert.True(decoding.Wait(30_000, ct), "the completion did not start decoding");

        var edit = live.EditAsync([new EditRequest { Subject = "Ivo Brennan", Prompt = "{} plays the", TargetNew = "flute" }], "rome", cancel: ct);
        if (holdMs > 10_000)
        {
            await Task.WhenAny(edit, Task.Delay(4_000, ct));
            Assert.False(edit.IsCompleted, "the edit finished while a completion was decoding");
            release.Set();
            var e = await edit;
            Assert.True(e.Timings.HeldMs >= 3_500, $"held {e.Timings.HeldMs} ms, expected at least the 4 s the completion was held");
        }
        else
        {
            var e = await edit.WaitAsync(TimeSpan.FromMinutes(2), ct);
            Assert.False(completion.IsCompleted, "the completion ended before the edit, so the hold was not tested");
            Assert.InRange(e.Timings.HeldMs, holdMs - 10, holdMs + 2_000);
            release.Set();
        }
        var r = await completion;
        Assert.Equal(before, r.Version); // it pinned the version current when it began
        Assert.True(live.Version > before);
    }
}
