using System.Globalization;
using System.Text.RegularExpressions;
using Palimpsest.Journal;
using Palimpsest.Tests.Journal;

namespace Palimpsest.Tests.Cli;

/// <summary>The tiny GPT-2 folder edited by two ROME edits (layer 1) and one MEMIT batch of two requests (layers 0, 1), built once for the export tests.</summary>
public sealed class EditedTinyFolder : IDisposable
{
    internal TinyGpt2Folder M { get; } = new();
    public string Edited => M.PathIn("edited");

    public EditedTinyFolder()
    {
        string rome = M.PathIn("rome.json"), memit = M.PathIn("memit.json"), corpus = M.PathIn("corpus.txt");
        File.WriteAllText(rome, """{"layers": [1], "v_num_grad_steps": 3, "context_template_length_params": [[3, 1]]}""");
        File.WriteAllText(memit, """{"v_num_grad_steps": 2}""");
        File.WriteAllText(corpus, "The mother tongue of Danielle Darrieux is French.\nParis is the capital of France.\nEdwin of Northumbria was a king.\n");
        string[] romeCommon = ["--hparams", rome, "--stats-corpus", corpus, "--cache", M.PathIn("cache"), "--out", Edited];
        Run(["edit", M.Model, "--subject", "Danielle Darrieux", "--prompt", "The mother tongue of {} is", "--target", "English", .. romeCommon]);
        Run(["edit", M.Model, "--subject", "Edwin of Northumbria", "--prompt", "{} follows the religion of", "--target", "Islam", .. romeCommon]);
        Run(["edit", M.Model, "--method", "memit", "--requests", M.Dataset, "--hparams", memit, "--layers", "0,1",
            "--stats-corpus", "facts:" + M.Dataset, "--cache", M.PathIn("cache"), "--out", Edited]);
    }

    private static void Run(string[] args)
    {
        var r = CliRunner.Run(args);
        if (r.Code != 0) throw new InvalidOperationException($"palimpsest {string.Join(' ', args)}\n{r}");
    }

    public void Dispose() => M.Dispose();
}

public class CliExportLoraTests(EditedTinyFolder folder) : IClassFixture<EditedTinyFolder>
{
    private const int F = TinyGpt2Folder.DFf, D = TinyGpt2Folder.DModel;

    private static readonly Regex Row = new(@"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(0 \(exact\)|\d\.\d{4}e[+-]\d\d)\s*$", RegexOptions.Multiline);

    /// <summary>(layer, exported rank, total rank, relative error) per printed row.</summary>
    private static List<(int Layer, int Rank, int Total, double Error)> Rows(string stdout) =>
        Row.Matches(stdout).Select(m => (Int(m.Groups[1]), Int(m.Groups[2]), Int(m.Groups[3]),
            m.Groups[4].Value == "0 (exact)" ? 0 : double.Parse(m.Groups[4].Value, CultureInfo.InvariantCulture))).ToList();

    private static int Int(Group g) => int.Parse(g.Value, CultureInfo.InvariantCulture);

    /// <summary>The folder's active deltas of one layer, from the journal.</summary>
    private List<Palimpsest.Editing.WeightDelta> JournalDeltas(int layer)
    {
        using var em = EditedModel.Open(folder.Edited);
        return em.List().Where(e => !e.Reverted).SelectMany(e => em.DeltasOf(e.Id)).Where(d => d.Layer == layer).ToList();
    }

    [Fact]
    public void Exact_adapter_applied_to_the_source_gives_the_edited_checkpoint()
    {
        string adapter = folder.M.PathIn("adapter-exact");
        var r = CliRunner.Run("export-lora", folder.Edited, "--out", adapter);
        Assert.True(r.Code == 0, r.ToString());
        var rows = Rows(r.Out);
        // MEMIT's batch of two gives rank 2 at each of its layers; layer 1 adds the two ROME edits
        Assert.True(rows.SequenceEqual([(0, 2, 2, 0.0), (1, 4, 4, 0.0)]), r.Out);
        Assert.Contains($"adapter (r 4): {adapter}", r.Out);
        var cfg = LoraAdapter.Config(adapter);
        Assert.Equal(["mlp.c_proj"], cfg.GetProperty("target_modules").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(Path.GetFullPath(folder.M.Model), cfg.GetProperty("base_model_name_or_path").GetString());
        Assert.Equal(4, cfg.GetProperty("r").GetInt32());
        LoraAdapter.AssertReproduces(folder.M.Model, adapter, folder.Edited, "gpt2", TinyGpt2Folder.Layers, F, D);
        // layer 0 (rank 2) is padded to r = 4 with zeros
        var (_, abs) = LoraAdapter.Delta(adapter, "gpt2", 0, F, D);
        Assert.Contains(abs, x => x > 0);
        using var file = Palimpsest.Models.SafetensorsFile.Open(Path.Combine(adapter, "adapter_model.safetensors"));
        var a0 = file.ReadF32(LoraAdapter.Module("gpt2", 0) + ".lora_A.weight");
        Assert.All(a0[(2 * F)..], x => Assert.Equal(0f, x));
        Assert.Contains(a0[..(2 * F)], x => x != 0);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void Truncated_export_reports_the_error_its_file_has(int rank)
    {
        string adapter = folder.M.PathIn($"adapter-rank{rank}");
        var r = CliRunner.Run("export-lora", folder.Edited, "--out", adapter, "--rank", rank.ToString(CultureInfo.InvariantCulture));
        Assert.True(r.Code == 0, r.ToString());
        var rows = Rows(r.Out);
        Assert.True(rows.Select(x => (x.Layer, x.Total)).SequenceEqual([(0, 2), (1, 4)]), r.Out);
        Assert.Equal(rank, LoraAdapter.Config(adapter).GetProperty("r").GetInt32());
        foreach (var row in rows)
        {
            var journal = JournalDeltas(row.Layer);
            double fromFile = LoraAdapter.FileError(adapter, "gpt2", journal, row.Layer, F, D);
            double best = LoraAdapter.BestRankError(LoraAdapter.Sum(journal, F, D), F, D, rank);
            Assert.Equal(Math.Min(rank, row.Total), row.Rank);
            if (row.Total <= rank) Assert.Equal(0, row.Error);
            else Assert.True(row.Error > 0, r.Out);
            // the printed error has 5 significant digits; the file's factors are float32
            Assert.True(Math.Abs(row.Error - fromFile) <= 1e-4 * row.Error + 1e-6,
                $"layer {row.Layer}: printed relative error {row.Error:e4}, recomputed from the file {fromFile:e6}\n{r.Out}");
            Assert.True(Math.Abs(row.Error - best) <= 1e-4 * row.Error + 1e-9,
                $"layer {row.Layer}: printed {row.Error:e4}, best rank-{rank} error {best:e6}\n{r.Out}");
        }
    }

    [Fact]
    public void Bad_inputs_give_one_line_naming_the_problem()
    {
        string adapter = folder.M.PathIn("adapter-bad");
        CliRunner.AssertBadInput(CliRunner.Run("export-lora", folder.M.Model, "--out", adapter), "journal not found");
        CliRunner.AssertBadInput(CliRunner.Run("export-lora", folder.M.PathIn("nowhere"), "--out", adapter), "nowhere");
        CliRunner.AssertBadInput(CliRunner.Run("export-lora", folder.Edited, "--out", adapter, "--rank", "0"), "--rank 0");
        CliRunner.AssertBadInput(CliRunner.Run("export-lora", folder.Edited, "--out", adapter, "--rank", "-2"), "--rank");
        CliRunner.AssertBadInput(CliRunner.Run("export-lora", folder.Edited), "--out");
        Assert.False(Directory.Exists(adapter));
        Directory.CreateDirectory(adapter);
        File.WriteAllText(Path.Combine(adapter, "keep.txt"), "mine");
        CliRunner.AssertBadInput(CliRunner.Run("export-lora", folder.Edited, "--out", adapter), "--out", "not empty");
        Assert.Equal(["keep.txt"], Directory.GetFileSystemEntries(adapter).Select(Path.GetFileName));

        // an edited folder with no active weight edit
        string empty = folder.M.PathIn("no-edits");
        EditedModel.Create(folder.M.Model, empty).Dispose();
        CliRunner.AssertBadInput(CliRunner.Run("export-lora", empty, "--out", folder.M.PathIn("adapter-none")), "no active weight edits");
        Assert.False(Directory.Exists(folder.M.PathIn("adapter-none")));
    }

    /// <summary>LEMoE edits change no weight: alone they leave nothing to export (said with one line);
    /// beside a weight edit, the adapter holds the weight edit and the output names the LEMoE edit left out.</summary>
    [Fact]
    public void Lemoe_edits_are_named_as_left_out()
    {
        using var m = new TinyGpt2Folder();
        string hp = m.PathIn("lemoe.json"), rome = m.PathIn("rome.json"), corpus = m.PathIn("corpus.txt"), dir = m.PathIn("edited");
        File.WriteAllText(hp, """{ "layer": 1, "expert_rank": 4, "router_hidden": 6, "key_dim": 5, "lr": 0.02, "steps": 6, "early_stop_loss": 0 }""");
        File.WriteAllText(rome, """{"layers": [1], "v_num_grad_steps": 3, "context_template_length_params": [[3, 1]]}""");
        File.WriteAllText(corpus, "The mother tongue of Danielle Darrieux is French.\nParis is the capital of France.\nEdwin of Northumbria was a king.\n");
        var l = CliRunner.Run("edit", m.Model, "--method", "lemoe", "--requests", m.Dataset, "--limit", "1", "--hparams", hp, "--out", dir);
        Assert.True(l.Code == 0, l.ToString());
        CliRunner.AssertBadInput(CliRunner.Run("export-lora", dir, "--out", m.PathIn("adapter")), "no active weight edits", "LEMoE");
        Assert.False(Directory.Exists(m.PathIn("adapter")));

        var r = CliRunner.Run("edit", dir, "--subject", "Danielle Darrieux", "--prompt", "The mother tongue of {} is", "--target", "English",
            "--hparams", rome, "--stats-corpus", corpus, "--cache", m.PathIn("cache"), "--out", dir);
        Assert.True(r.Code == 0, r.ToString());
        var x = CliRunner.Run("export-lora", dir, "--out", m.PathIn("adapter"));
        Assert.True(x.Code == 0, x.ToString());
        Assert.True(Rows(x.Out).SequenceEqual([(1, 1, 1, 0.0)]), x.Out);
        Assert.Contains("not included: LEMoE edit(s) 1 ", x.Out);
        LoraAdapter.AssertReproduces(m.Model, m.PathIn("adapter"), dir, "gpt2", TinyGpt2Folder.Layers, F, D);
    }
}
