using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using Palimpsest.Journal;
using Palimpsest.Models;
using static Palimpsest.Tests.Journal.JournalFixtures;

namespace Palimpsest.Tests.Journal;

/// <summary>
/// Kills a child process in the middle of an apply or revert (exactly at each protocol step, and
/// at random moments of a long run) and checks that Open() then finds the old or the new state —
/// checkpoint bits and journal agreeing — never a mix. Uses the fp16 fixture (masters matter there).
/// </summary>
public class JournalKillTests
{
    private const int Seed = 21;

    [Theory]
    [InlineData("masters-written", false)]
    [InlineData("pending-written", false)]
    [InlineData("committed", true)]
    [InlineData("renamed", true)]
    public void Killed_apply_leaves_the_old_or_the_new_state(string step, bool expectNew)
    {
        using var tmp = NewTemp();
        string baseDir = tmp.Sub("base");
        EditedModel.Create(MakeF16(tmp.Sub("src")), baseDir).Dispose();
        var oldRaw = RawTensors(Path.Combine(baseDir, EditedModel.CheckpointFile));
        var newRaw = ApplyInProcess(baseDir, tmp.Sub("reference"));

        string victim = CopyFolder(baseDir, tmp.Sub("victim"));
        KillAt($"apply:{step}:{Seed}", victim, "AT " + step);

        using var m = EditedModel.Open(victim);
        Assert.Empty(Differences(expectNew ? newRaw : oldRaw, RawTensors(m.CheckpointPath)));
        Assert.Equal(expectNew ? 1 : 0, m.List().Count);
        Assert.Equal(expectNew ? 1 : 0, m.Generation);
        if (step is "pending-written" or "committed") Assert.NotNull(m.Recovery);
        AssertClean(m);
    }

    [Theory]
    [InlineData("pending-written", false)]
    [InlineData("committed", true)]
    [InlineData("renamed", true)]
    public void Killed_revert_leaves_the_edit_applied_or_reverted(string step, bool expectReverted)
    {
        using var tmp = NewTemp();
        string src = MakeF16(tmp.Sub("src"));
        var originalRaw = RawTensors(Path.Combine(src, "model.safetensors"));
        string baseDir = tmp.Sub("base");
        long id;
        using (var b = EditedModel.Create(src, baseDir)) id = b.Apply([RandomDelta(Seed)], Record(Seed));
        var editedRaw = RawTensors(Path.Combine(baseDir, EditedModel.CheckpointFile));

        string victim = CopyFolder(baseDir, tmp.Sub("victim"));
        KillAt($"revert:{step}:{id}", victim, "AT " + step);

        using var m = EditedModel.Open(victim);
        Assert.Empty(Differences(expectReverted ? originalRaw : editedRaw, RawTensors(m.CheckpointPath)));
        Assert.Equal(expectReverted, m.List().Single().Reverted);
        Assert.Equal(expectReverted ? 2 : 1, m.Generation);
        AssertClean(m);
    }

    [Fact]
    public void A_reader_after_a_kill_between_commit_and_rename_sees_the_journals_weights()
    {
        // killed after the journal's commit, before the checkpoint's rename: the journal lists the
        // edit, model.safetensors still holds generation 0; a reading command must not use it
        using var tmp = NewTemp();
        string victim = tmp.Sub("victim");
        EditedModel.Create(MakeF16(tmp.Sub("src")), victim).Dispose();
        var newRaw = ApplyInProcess(victim, tmp.Sub("reference"));
        KillAt($"apply:committed:{Seed}", victim, "AT committed");
        var r = Palimpsest.Tests.Cli.CliRunner.Run("predict", victim, "--ids", "1,2,3");
        Assert.True(r.Code == 0, r.ToString());
        Assert.Empty(Differences(newRaw, RawTensors(Path.Combine(victim, EditedModel.CheckpointFile))));
        // with another process holding the folder, a checkpoint behind the journal is refused, not read
        string held = CopyFolder(victim, tmp.Sub("held"));
        using (var m = EditedModel.Open(held)) { }
        KillAt($"apply:committed:{Seed + 1}", held, "AT committed");
        using (var lockHolder = new FileStream(Path.Combine(held, EditedModel.LockFile), FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            Palimpsest.Tests.Cli.CliRunner.AssertBadInput(Palimpsest.Tests.Cli.CliRunner.Run("predict", held, "--ids", "1,2,3"), "being applied by another process");
            // journal, a reader too, does not wait or fail: it shows the journal as committed
            var j = Palimpsest.Tests.Cli.CliRunner.Run("journal", held);
            Assert.True(j.Code == 0, j.ToString());
            Assert.Contains("another process is applying an edit", j.Out);
            Assert.Contains("2 edit(s), 2 active, generation 2", j.Out);
        }
    }

    [Fact]
    public void Killed_after_commit_with_the_pending_file_lost_is_rebuilt_from_the_journal()
    {
        using var tmp = NewTemp();
        string victim = tmp.Sub("victim");
        EditedModel.Create(MakeF16(tmp.Sub("src")), victim).Dispose();
        var newRaw = ApplyInProcess(victim, tmp.Sub("reference"));
        KillAt($"apply:committed:{Seed}", victim, "AT committed");
        File.Delete(Path.Combine(victim, EditedModel.CheckpointFile + ".pending-1"));

        using var m = EditedModel.Open(victim);
        Assert.Contains("rebuilt generation 1", m.Recovery);
        Assert.Empty(Differences(newRaw, RawTensors(m.CheckpointPath)));
        AssertClean(m);
    }

    [Fact]
    public void Killed_at_random_moments_of_a_long_run_the_checkpoint_always_matches_the_journal()
    {
        using var tmp = NewTemp();
        string src = MakeF16(tmp.Sub("src"));
        var original = ModelLoader.LoadHost(src).Params;
        string victim = tmp.Sub("victim");
        EditedModel.Create(src, victim).Dispose();
        var rng = new Random(5);
        for (int round = 0; round < 3; round++)
        {
            // Let it complete a few operations, then kill it a few ms into the next one.
            KillAt($"loop:{100 * (round + 1)}", victim, $"OP {1 + round}", extraDelayMs: rng.Next(1, 25));
            using var m = EditedModel.Open(victim);
            AssertMatchesJournal(m, original);
            AssertClean(m);
        }
    }

    // Independent reference: W = (Half)(original + Σ active deltas in id order) in float64, compared
    // bit for bit with the checkpoint; the stored factors must be exactly those of the recorded seed.
    private static void AssertMatchesJournal(EditedModel m, ParamSet<Palimpsest.Tensors.HostTensor> original)
    {
        var entries = m.List();
        Assert.NotEmpty(entries);
        var ckpt = RawTensors(m.CheckpointPath);
        for (int l = 0; l < 4; l++)
        {
            var w = original.Blocks[l].WDown.ToDouble(); // [f, d], GPT-2's stored layout
            foreach (var e in entries)
            {
                int seed = JsonDocument.Parse(e.HyperParametersJson).RootElement.GetProperty("seed").GetInt32();
                var stored = m.DeltasOf(e.Id).Single();
                var expected = RandomDelta(seed);
                Assert.True(stored.Left.AsSpan().SequenceEqual(expected.Left) && stored.Right.AsSpan().SequenceEqual(expected.Right), $"edit {e.Id}: stored factors differ from seed {seed}");
                if (e.Reverted || stored.Layer != l) continue;
                for (int r = 0; r < stored.Rank; r++)
                    for (int i = 0; i < 256; i++)
                        for (int j = 0; j < 64; j++) w[i * 64 + j] += stored.Left[r * 256 + i] * stored.Right[r * 64 + j];
            }
            var want = MemoryMarshal.AsBytes(Array.ConvertAll(w, x => (Half)x).AsSpan()).ToArray();
            Assert.True(want.AsSpan().SequenceEqual(ckpt[m.Down(l).TensorName]),
                $"layer {l}: checkpoint differs from original + active deltas of journal generation {m.Generation} ({entries.Count} edits, {entries.Count(e => e.Reverted)} reverted)");
        }
    }

    private static Dictionary<string, byte[]> ApplyInProcess(string baseDir, string copy)
    {
        CopyFolder(baseDir, copy);
        using var r = EditedModel.Open(copy);
        r.Apply([RandomDelta(Seed)], Record(Seed));
        return RawTensors(r.CheckpointPath);
    }

    /// <summary>No pending or temp file is left, and the folder loads as a model.</summary>
    private static void AssertClean(EditedModel m)
    {
        Assert.DoesNotContain(Directory.GetFiles(m.Dir), p => p.Contains(".pending-") || p.Contains(".tmp-"));
        Assert.Equal(4, ModelLoader.LoadHost(m.Dir).Config.Layers);
    }

    private static string CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var f in Directory.GetFiles(from)) File.Copy(f, Path.Combine(to, Path.GetFileName(f)));
        return to;
    }

    /// <summary>Starts the child, waits for <paramref name="line"/> on its stdout, (optionally waits a bit more,) kills it.</summary>
    private static void KillAt(string mode, string dir, string line, int extraDelayMs = 0)
    {
        var psi = new ProcessStartInfo(Muxer()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add("exec");
        psi.ArgumentList.Add(typeof(JournalChild).Assembly.Location);
        psi.Environment[JournalChild.ModeVar] = mode;
        psi.Environment[JournalChild.DirVar] = dir;
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var seen = new List<string>();
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (true)
            {
                var read = p.StandardOutput.ReadLineAsync();
                if (!read.Wait(deadline - DateTime.UtcNow) || read.Result is null)
                    Assert.Fail($"child '{mode}' never printed '{line}' (printed: {string.Join(" | ", seen)}; stderr: {(stderr.IsCompleted ? stderr.Result : "")})");
                seen.Add(read.Result!);
                if (read.Result == line) break;
            }
            if (extraDelayMs > 0) Thread.Sleep(extraDelayMs);
        }
        finally
        {
            if (!p.HasExited) p.Kill(entireProcessTree: true);
            p.WaitForExit();
        }
        Assert.NotEqual(0, p.ExitCode); // it was killed, not finished
    }

    /// <summary>The dotnet host running this test (or the one beside the runtime).</summary>
    internal static string Muxer()
    {
        string? self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet") return self;
        // RuntimeDirectory is <root>/shared/Microsoft.NETCore.App/<version>/
        string root = Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", ".."));
        string exe = Path.Combine(root, OperatingSystem.IsWindows() ? "dotnet.exe" : "dotnet");
        return File.Exists(exe) ? exe : "dotnet";
    }
}
