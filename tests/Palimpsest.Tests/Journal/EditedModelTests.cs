using Microsoft.Data.Sqlite;
using Palimpsest.Editing;
using Palimpsest.Journal;
using Palimpsest.Models;
using static Palimpsest.Tests.Journal.JournalFixtures;

namespace Palimpsest.Tests.Journal;

public class EditedModelTests
{
    // Three edits: layer 1; layers 1 and 2 (layer 1 edited twice across edits); layer 3.
    private static WeightDelta[][] ThreeEdits(int f = 256, int d = 64) =>
    [
        [RandomDelta(11, layer: 1, f: f, d: d)],
        [RandomDelta(12, layer: 1, f: f, d: d), RandomDelta(13, layer: 2, f: f, d: d)],
        [RandomDelta(14, layer: 3, f: f, d: d)],
    ];

    [Theory]
    [InlineData("F32")]
    [InlineData("F16")]
    [InlineData("BF16")]
    [InlineData("F64")]
    public void Apply_changes_the_down_projection_by_the_delta_and_reverting_all_restores_every_bit(string dtype)
    {
        using var tmp = NewTemp();
        string src = dtype == "F32" ? Gpt2F32 : Convert(tmp.Sub("src"), dtype);
        var original = RawTensors(Path.Combine(src, "model.safetensors"));
        using var m = EditedModel.Create(src, tmp.Sub("edited"));
        Assert.Empty(Differences(original, RawTensors(m.CheckpointPath)));

        // Tolerance of one rounding of `after` and one of `before`: 2^-p relative (p = 53 fp64, 24 fp32, 11 fp16,
        // 8 bf16) + half of fp16's subnormal step; fp64 also allows the roundings inside the float64 sum.
        double eps = Math.Pow(2, -(dtype switch { "F64" => 51, "F32" => 24, "F16" => 11, _ => 8 }));
        double tiny = dtype switch { "F16" => Math.Pow(2, -25), "F64" => 1e-15, _ => 0 };
        var edits = ThreeEdits();
        var ids = new List<long>();
        foreach (var deltas in edits)
        {
            var before = ModelLoader.LoadHost(m.Dir).Params;
            var rawBefore = RawTensors(m.CheckpointPath);
            ids.Add(m.Apply(deltas, Record(ids.Count)));
            var after = ModelLoader.LoadHost(m.Dir).Params;
            for (int l = 0; l < 4; l++)
            {
                var b = before.Blocks[l].WDown; var a = after.Blocks[l].WDown;
                var mine = deltas.Where(x => x.Layer == l).ToList();
                if (mine.Count == 0) { Assert.Equal(b.ToDouble(), a.ToDouble()); continue; }
                var expected = b.ToDouble();
                foreach (var x in mine) { var dense = x.ToDense(); for (int i = 0; i < expected.Length; i++) expected[i] += dense[i]; }
                double maxErr = 0, maxChange = 0; int worst = -1;
                for (int i = 0; i < expected.Length; i++)
                {
                    double err = Math.Abs(a[i] - expected[i]), tol = eps * (Math.Abs(a[i]) + Math.Abs(b[i])) + tiny;
                    if (err > tol && (worst < 0 || err > maxErr)) worst = i;
                    maxErr = Math.Max(maxErr, err);
                    maxChange = Math.Max(maxChange, Math.Abs(a[i] - b[i]));
                }
                Assert.True(worst < 0, $"{dtype} layer {l}: WDown[{worst}] = {(worst < 0 ? 0 : a[worst])}, before + delta = {(worst < 0 ? 0 : expected[worst])} (max abs err {maxErr:e2})");
                Assert.True(maxChange > 1e-3, $"{dtype} layer {l}: the edit barely changed WDown (max change {maxChange:e2}); the test would not notice a missing delta");
            }
            // Nothing but the edited down-projections changed.
            var changed = Differences(rawBefore, RawTensors(m.CheckpointPath));
            Assert.Equal(deltas.Select(x => m.Down(x.Layer).TensorName).Distinct().Order(), changed);
        }

        var list = m.List();
        Assert.Equal(ids, list.Select(e => e.Id));
        Assert.Equal([[1], [1, 2], [3]], list.Select(e => e.Layers.ToArray()).ToArray());
        Assert.All(list, e => Assert.False(e.Reverted));
        Assert.Equal(edits[0][0].FrobeniusNorm(), list[0].DeltaNorm, 12);
        Assert.Equal(Math.Sqrt(Math.Pow(edits[1][0].FrobeniusNorm(), 2) + Math.Pow(edits[1][1].FrobeniusNorm(), 2)), list[1].DeltaNorm, 12);
        Assert.Equal("Subject 1", list[1].Subject);
        Assert.Equal(3, m.Generation);
        var stored = m.DeltasOf(ids[1]);
        Assert.Equal(edits[1].Select(x => (x.Layer, x.Rank)), stored.Select(x => (x.Layer, x.Rank)));
        Assert.Equal(edits[1][1].Left, stored[1].Left);
        Assert.Equal(edits[1][1].Right, stored[1].Right);

        // Out of order: the middle edit first. Each revert leaves the others' effect in place.
        foreach (var id in new[] { ids[1], ids[2], ids[0] })
        {
            m.Revert(id);
            Assert.True(m.List().Single(e => e.Id == id).Reverted);
        }
        Assert.Equal(6, m.Generation);
        Assert.Empty(Differences(original, RawTensors(m.CheckpointPath)));
        var reloaded = ModelLoader.LoadHost(m.Dir).Params;
        var source = ModelLoader.LoadHost(src).Params;
        foreach (var ((name, x), (_, y)) in reloaded.Named().Zip(source.Named())) Assert.True(x.ToDouble().AsSpan().SequenceEqual(y.ToDouble()), name);
    }

    [Fact]
    public void Revert_with_others_active_equals_applying_only_the_others()
    {
        using var tmp = NewTemp();
        var edits = ThreeEdits();
        using var a = EditedModel.Create(Gpt2F32, tmp.Sub("a"));
        var ids = edits.Select((d, i) => a.Apply(d, Record(i))).ToList();
        a.Revert(ids[1]);
        using var b = EditedModel.Create(Gpt2F32, tmp.Sub("b"));
        b.Apply(edits[0], Record(0));
        b.Apply(edits[2], Record(2));
        Assert.Empty(Differences(RawTensors(a.CheckpointPath), RawTensors(b.CheckpointPath)));
    }

    [Theory]
    [InlineData("gptj", 256)]
    [InlineData("llama", 172)]
    [InlineData("gpt_neox", 256)]
    public void Transposed_checkpoints_get_the_delta_in_canonical_layout(string fixture, int f)
    {
        using var tmp = NewTemp();
        using var m = EditedModel.Create(Paths.Fixture(fixture), tmp.Sub("edited"));
        Assert.True(m.Down(2).Transposed);
        var delta = RandomDelta(7, layer: 2, f: f);
        var before = ModelLoader.LoadHost(m.Dir).Params.Blocks[2].WDown.ToDouble();
        m.Apply([delta], Record(7));
        var after = ModelLoader.LoadHost(m.Dir).Params.Blocks[2].WDown;
        var dense = delta.ToDense();
        double worst = 0;
        for (int i = 0; i < dense.Length; i++) worst = Math.Max(worst, Math.Abs(after[i] - before[i] - dense[i]) / (Math.Abs(after[i]) + Math.Abs(before[i]) + 1e-30));
        Assert.True(worst <= Math.Pow(2, -24), $"{fixture}: max relative deviation from before + delta {worst:e2}");
        // The in-place refresh a caller uses instead of reloading gives exactly what a reload gives.
        Assert.Equal(after.ToFloat(), m.ReadDownProjection(2).ToFloat());
        Assert.Equal(after.Shape, m.ReadDownProjection(2).Shape);
        Assert.True(EditedModel.IsEditedModel(m.Dir));
        Assert.False(EditedModel.IsEditedModel(Paths.Fixture(fixture)));
    }

    [Fact]
    public void Reopening_a_consistent_folder_changes_nothing()
    {
        using var tmp = NewTemp();
        string dir = tmp.Sub("edited");
        using (var m = EditedModel.Create(Gpt2F32, dir)) m.Apply([RandomDelta(3)], Record(3));
        var raw = RawTensors(Path.Combine(dir, EditedModel.CheckpointFile));
        using var again = EditedModel.Open(dir);
        Assert.Null(again.Recovery);
        Assert.Equal(1, again.Generation);
        Assert.Single(again.List());
        Assert.Empty(Differences(raw, RawTensors(again.CheckpointPath)));
        Assert.Equal(["config.json", "edits.lock", "edits.sqlite", "masters.safetensors", "model.safetensors"],
            Directory.GetFiles(dir).Select(p => Path.GetFileName(p)!).Order().ToArray());
    }

    [Fact]
    public void Bad_reverts_and_bad_deltas_are_refused_without_changing_anything()
    {
        using var tmp = NewTemp();
        using var m = EditedModel.Create(Gpt2F32, tmp.Sub("edited"));
        long id = m.Apply([RandomDelta(1)], Record(1));
        m.Revert(id);
        var e1 = Assert.Throws<InvalidOperationException>(() => m.Revert(id));
        Assert.Contains("already reverted", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => m.Revert(99));
        Assert.Contains("edit 99 not found", e2.Message);
        var wrongShape = new WeightDelta(0, 1, new double[255], new double[64]);
        Assert.Contains("Left [1, 256]", Assert.Throws<ArgumentException>(() => m.Apply([wrongShape], Record(2))).Message);
        var badLayer = RandomDelta(2, layer: 4);
        Assert.Contains("layer 4 is out of range", Assert.Throws<ArgumentException>(() => m.Apply([badLayer], Record(2))).Message);
        var nan = RandomDelta(2); nan.Left[5] = double.NaN;
        Assert.Contains("NaN", Assert.Throws<ArgumentException>(() => m.Apply([nan], Record(2))).Message);
        Assert.Contains("not valid JSON", Assert.Throws<ArgumentException>(() => m.Apply([RandomDelta(2)], Record(2) with { HyperParametersJson = "{lr:" })).Message);
        Assert.Equal(2, m.Generation);
        Assert.Single(m.List());
    }

    [Fact]
    public void Missing_or_malformed_journal_gives_one_line_naming_the_file()
    {
        using var tmp = NewTemp();
        string dir = tmp.Sub("edited");
        EditedModel.Create(Gpt2F32, dir).Dispose();
        string journal = Path.Combine(dir, EditedModel.JournalFile);

        void ExpectError(string contains)
        {
            var e = Assert.Throws<JournalException>(() => EditedModel.Open(dir));
            Assert.Contains(journal, e.Message);
            Assert.Contains(contains, e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }

        File.Move(journal, journal + ".bak");
        ExpectError("journal not found");
        File.WriteAllText(journal, "this is not an SQLite database, just text long enough to fill a header page......");
        ExpectError("not a valid Palimpsest journal");
        File.Delete(journal);
        using (var c = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = journal, Pooling = false }.ToString()))
        {
            c.Open();
            using var cmd = c.CreateCommand();
            cmd.CommandText = "CREATE TABLE other(x INTEGER)";
            cmd.ExecuteNonQuery();
        }
        ExpectError("no such table: meta");
        File.Delete(journal);
        File.Move(journal + ".bak", journal);
        EditedModel.Open(dir).Dispose();

        var nowhere = Assert.Throws<JournalException>(() => EditedModel.Open(tmp.Sub("missing")));
        Assert.Contains("folder not found", nowhere.Message);
    }

    [Fact]
    public void A_folder_open_in_one_place_cannot_be_opened_for_editing_again()
    {
        using var tmp = NewTemp();
        using var m = EditedModel.Create(Gpt2F32, tmp.Sub("edited"));
        var e = Assert.Throws<JournalException>(() => EditedModel.Open(m.Dir));
        Assert.Contains("open in another process", e.Message);
    }

    [Fact]
    public void Create_refuses_a_non_empty_target_and_copies_only_non_weight_files()
    {
        using var tmp = NewTemp();
        string dir = tmp.Sub("taken");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "x.txt"), "x");
        Assert.Contains("not empty", Assert.Throws<IOException>(() => EditedModel.Create(Gpt2F32, dir)).Message);
        // The fixture also holds reference.safetensors (test data, not weights of the model): not copied.
        using var m = EditedModel.Create(Gpt2F32, tmp.Sub("ok"));
        Assert.False(File.Exists(Path.Combine(m.Dir, "reference.safetensors")));
        Assert.DoesNotContain(Directory.GetDirectories(tmp.Path), p => p.Contains(".creating-"));
    }
}

/// <summary>Partial folders of a killed Create: removed by the next Create when their process is gone, left alone otherwise.</summary>
public class StaleCreationTests
{
    [Fact]
    public void A_killed_creations_folder_is_removed_by_the_next_create_and_a_live_or_foreign_one_is_kept()
    {
        using var m = new Palimpsest.Tests.Cli.TinyGpt2Folder();
        string outDir = m.PathIn("edited");
        // a process that has exited: its pid names no live process with its start time
        var child = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("true") { UseShellExecute = false })!;
        child.WaitForExit();
        string dead = outDir + ".creating-0000dead0000", live = outDir + ".creating-00001ive0000", foreign = outDir + ".creating-not-ours";
        foreach (var d in new[] { dead, live, foreign }) Directory.CreateDirectory(d);
        File.WriteAllText(Path.Combine(dead, ".creator"), $"{child.Id} 1");
        File.WriteAllBytes(Path.Combine(dead, "model.safetensors"), new byte[4096]);
        using (var me = System.Diagnostics.Process.GetCurrentProcess())
            File.WriteAllText(Path.Combine(live, ".creator"), $"{me.Id} {me.StartTime.ToUniversalTime().Ticks}");
        using var em = EditedModel.Create(m.Model, outDir);
        Assert.False(Directory.Exists(dead), "the killed creation's folder is still there");
        Assert.True(Directory.Exists(live), "a folder another running Create is building was removed");
        Assert.True(Directory.Exists(foreign), "a folder without our creator file was removed");
        Assert.Contains("removed 1 partial folder(s)", em.Recovery);
        Assert.False(File.Exists(Path.Combine(outDir, ".creator")));
    }
}

/// <summary>File-system failures while creating a folder are said about the folder the user named, not .NET's temporary paths.</summary>
public class CreateFailureTests
{
    [Fact]
    public void A_folder_that_cannot_be_created_is_named_with_the_reason()
    {
        if (!OperatingSystem.IsLinux()) Assert.Skip("uses /proc, which takes no new folders on Linux");
        using var m = new Palimpsest.Tests.Cli.TinyGpt2Folder();
        var e = Assert.Throws<JournalException>(() => EditedModel.Create(m.Model, "/proc/palimpsest-test-out"));
        Assert.Equal("/proc/palimpsest-test-out: cannot create the edited-model folder there: /proc does not take new folders", e.Message);
        Assert.DoesNotContain(".creating-", e.Message);
    }
}

