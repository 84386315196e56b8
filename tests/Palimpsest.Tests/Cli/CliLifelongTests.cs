using System.Text.Json;

namespace Palimpsest.Tests.Cli;

public class CliLifelongTests
{
    [Theory]
    [InlineData("rome", "1")]
    [InlineData("memit", "0,1")]
    public void Lifelong_writes_the_checkpoint_table_and_json(string method, string layers)
    {
        using var m = new TinyGpt2Folder();
        string hp = m.PathIn("few-steps.json"), report = m.PathIn("report");
        File.WriteAllText(hp, """{"v_num_grad_steps": 2}""");
        var r = CliRunner.Run("lifelong", m.Model, "--method", method, "--layers", layers, "--hparams", hp, "--dataset", m.Dataset,
            "--edits", "1", "--held-out", "1", "--stats-corpus", "facts:" + m.Dataset, "--cache", m.PathIn("cache"), "--report", report);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("| edits | ES | GS | LS | ERS | ORS | S |", r.Out);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(report, "lifelong.json")));
        var cps = doc.RootElement.GetProperty("checkpoints");
        Assert.Equal(1, cps.GetArrayLength());
        Assert.Equal(1, cps[0].GetProperty("edits").GetInt32());
        Assert.True(doc.RootElement.GetProperty("complete").GetBoolean(), "a finished run's report is marked complete");
        Assert.Contains("lifelong: 1 of 1 edits, S ", r.Err);
        Assert.True(cps[0].GetProperty("delta_norms").GetProperty(layers[..1]).GetDouble() > 0, "the edited layer drifted");
        Assert.True(File.Exists(Path.Combine(report, "lifelong.md")));
    }

    /// <summary>A run that stops part-way (here: the second record's prompt is longer than the context) leaves the report of its last checkpoint, marked partial.</summary>
    [Fact]
    public void A_stream_that_fails_part_way_leaves_its_last_checkpoint_marked_partial()
    {
        using var m = new TinyGpt2Folder();
        string hp = m.PathIn("few-steps.json"), report = m.PathIn("report"), data = m.PathIn("long.json");
        File.WriteAllText(hp, """{"v_num_grad_steps": 2}""");
        string longPrompt = string.Join(" ", Enumerable.Repeat("and then", 40)) + " Edwin of Northumbria follows";
        // the folder's two records, with the second one's prompt made longer than the context
        var records = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(m.Dataset))!.AsArray();
        records[1]!["prompt"] = longPrompt;
        File.WriteAllText(data, records.ToJsonString());
        var r = CliRunner.Run("lifelong", m.Model, "--method", "rome", "--layers", "1", "--hparams", hp, "--dataset", data,
            "--edits", "2", "--held-out", "0", "--stats-corpus", "facts:" + m.Dataset, "--cache", m.PathIn("cache"), "--report", report);
        Assert.True(r.Code != 0, r.ToString());
        Assert.Contains("edit 2 of the stream", r.Err);
        Assert.Contains("longer than the model's context", r.Err);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(report, "lifelong.json")));
        Assert.False(doc.RootElement.GetProperty("complete").GetBoolean());
        Assert.Equal([1], doc.RootElement.GetProperty("checkpoints").EnumerateArray().Select(c => c.GetProperty("edits").GetInt32()));
        Assert.Contains("Partial: the run had reached 1 of 2 edits", File.ReadAllText(Path.Combine(report, "lifelong.md")));
        Assert.Empty(Directory.GetFiles(report, "*.tmp-*"));
    }

    /// <summary>
    /// --stop-after leaves a partial report and the state; --resume goes on from it to the report an
    /// uninterrupted run writes, byte for byte; a resume with other options is one line naming the
    /// option, and a finished run leaves no state behind.
    /// </summary>
    [Fact]
    public void A_stopped_run_resumed_writes_the_uninterrupted_runs_report()
    {
        using var m = new TinyGpt2Folder();
        string whole = m.PathIn("whole"), sliced = m.PathIn("sliced");
        string[] Args(string report, params string[] more) => ArgsWith(report, "wilke.json", m.Dataset, more);
        string[] ArgsWith(string report, string hparams, string dataset, params string[] more) => ["lifelong", m.Model, "--method", "wilke", "--hparams", m.PathIn(hparams), "--dataset", dataset,
            "--edits", "2", "--held-out", "0", "--stats-corpus", "facts:" + m.Dataset, "--cache", m.PathIn("cache"), "--report", report, .. more];
        File.WriteAllText(m.PathIn("wilke.json"), """{"v_num_grad_steps": 3, "scanning_ceiling": 2}""");

        var r = CliRunner.Run(Args(whole));
        Assert.True(r.Code == 0, r.ToString());
        Assert.False(Directory.Exists(Path.Combine(whole, "state")), "a finished run leaves no state");

        r = CliRunner.Run(Args(sliced, "--stop-after", "1"));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("stopped after 1 of 2 edits", r.Out);
        Assert.Contains("Partial: the run had reached 1 of 2 edits", File.ReadAllText(Path.Combine(sliced, "lifelong.md")));
        Assert.True(File.Exists(Path.Combine(sliced, "state", "state.json")));

        File.WriteAllText(m.PathIn("other.json"), """{"v_num_grad_steps": 4, "scanning_ceiling": 2}""");
        CliRunner.AssertBadInput(CliRunner.Run(ArgsWith(sliced, "other.json", m.Dataset, "--resume")), "--resume: the saved run", "hparams");
        var other = Args(sliced, "--resume");
        other[Array.IndexOf(other, "--stats-corpus") + 1] = "facts:" + m.PathIn("copy.json");
        File.Copy(m.Dataset, m.PathIn("copy.json"));
        CliRunner.AssertBadInput(CliRunner.Run(other), "stats_corpus");
        CliRunner.AssertBadInput(CliRunner.Run(ArgsWith(sliced, "wilke.json", m.PathIn("copy.json"), "--resume")), "dataset");

        r = CliRunner.Run(Args(sliced, "--resume"));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("resuming at 1 of 2 edits", r.Err);
        Assert.Equal(File.ReadAllText(Path.Combine(whole, "lifelong.md")), File.ReadAllText(Path.Combine(sliced, "lifelong.md")));
        Assert.Equal(File.ReadAllText(Path.Combine(whole, "lifelong.json")), File.ReadAllText(Path.Combine(sliced, "lifelong.json")));
        Assert.False(Directory.Exists(Path.Combine(sliced, "state")), "the resumed run finished: its state is gone");

        CliRunner.AssertBadInput(CliRunner.Run(Args(sliced, "--resume")), "no saved state");
        CliRunner.AssertBadInput(CliRunner.Run(Args(sliced, "--stop-after", "1", "--monitor")), "cannot be resumed");
    }

    [Fact]
    public void Lifelong_with_the_monitor_writes_its_forecasts_and_lemoe_runs_without_weight_changes()
    {
        using var m = new TinyGpt2Folder();
        string hp = m.PathIn("few-steps.json"), report = m.PathIn("report");
        File.WriteAllText(hp, """{"v_num_grad_steps": 2}""");
        var r = CliRunner.Run("lifelong", m.Model, "--method", "rome", "--layers", "1", "--hparams", hp, "--dataset", m.Dataset,
            "--edits", "2", "--held-out", "1", "--stats-corpus", "facts:" + m.Dataset, "--cache", m.PathIn("cache"), "--report", report, "--monitor");
        Assert.True(r.Code == 0, r.ToString());
        string md = File.ReadAllText(Path.Combine(report, "lifelong.md"));
        Assert.True(md.Contains("Interference monitor over 0 held-out facts and the edits so far: 2 forecasts, nothing refused"), md);
        Assert.Contains("| max / own | most at risk | action |", File.ReadAllText(Path.Combine(report, "monitor.md")));

        // --move-to: a batch over the threshold is tried at layer 0 too; under a threshold nothing meets, refused
        var mv = CliRunner.Run("lifelong", m.Model, "--method", "rome", "--layers", "1", "--hparams", hp, "--dataset", m.Dataset, "--edits", "1", "--held-out", "1",
            "--stats-corpus", "facts:" + m.Dataset, "--cache", m.PathIn("cache"), "--report", m.PathIn("moved"), "--refuse-above", "1e-300", "--move-to", "0");
        Assert.True(mv.Code == 0, mv.ToString());
        Assert.Contains("| refused |", File.ReadAllText(Path.Combine(m.PathIn("moved"), "monitor.md")));
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--method", "rome", "--layers", "1", "--hparams", hp, "--dataset", m.Dataset, "--edits", "1",
            "--stats-corpus", "facts:" + m.Dataset, "--report", m.PathIn("moved"), "--move-to", "0"), "--move-to", "--refuse-above");
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--method", "memit", "--layers", "0", "--hparams", hp, "--dataset", m.Dataset, "--edits", "1",
            "--stats-corpus", "facts:" + m.Dataset, "--report", m.PathIn("moved"), "--refuse-above", "0.5", "--move-to", "1"), "--move-to", "memit");
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(report, "lifelong.json"))))
            Assert.Equal(2, doc.RootElement.GetProperty("monitor").GetArrayLength());

        string lhp = m.PathIn("lemoe.json"), lreport = m.PathIn("lemoe-report");
        File.WriteAllText(lhp, """{"layer": 1, "expert_rank": 4, "router_hidden": 4, "key_dim": 4, "steps": 3, "lr": 0.01}""");
        var l = CliRunner.Run("lifelong", m.Model, "--method", "lemoe", "--hparams", lhp, "--dataset", m.Dataset, "--edits", "2", "--batch", "1",
            "--held-out", "1", "--report", lreport);
        Assert.True(l.Code == 0, l.ToString());
        using (var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(lreport, "lifelong.json"))))
        {
            Assert.Equal("lemoe", doc.RootElement.GetProperty("method").GetString());
            Assert.Equal(2, doc.RootElement.GetProperty("checkpoints").EnumerateArray().Last().GetProperty("edits").GetInt32());
        }
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--method", "lemoe", "--hparams", lhp, "--dataset", m.Dataset, "--edits", "1",
            "--report", lreport, "--refuse-above", "0.5"), "lemoe");
        File.WriteAllText(lhp, """{"layer": 1, "expert_rnak": 4}""");
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--method", "lemoe", "--hparams", lhp, "--dataset", m.Dataset, "--edits", "1",
            "--report", lreport), "expert_rnak");
    }

    [Fact]
    public void A_norm_anchored_stream_says_its_anchor_measured_from_the_dataset()
    {
        using var m = new TinyGpt2Folder();
        string hp = m.PathIn("memit-nas.json"), report = m.PathIn("nas");
        File.WriteAllText(hp, """{"layers": [1], "v_num_grad_steps": 2, "context_template_length": 3, "norm_anchor": true, "nas_restart": 2}""");
        var r = CliRunner.Run("lifelong", m.Model, "--method", "memit", "--hparams", hp, "--dataset", m.Dataset, "--edits", "1", "--held-out", "1",
            "--batch", "1", "--stats-corpus", "facts:" + m.Dataset, "--report", report);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Matches(@"lifelong: norm anchor \d+\.\d{3} at layer 1; \d request\(s\) skipped", r.Err);
        Assert.Contains("\"norm_anchor\": true", File.ReadAllText(Path.Combine(report, "lifelong.json")));
    }

    [Fact]
    public void Lifelong_bad_inputs_are_one_error_line()
    {
        using var m = new TinyGpt2Folder();
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--dataset", m.Dataset, "--edits", "5", "--layers", "1", "--stats-corpus", "facts:" + m.Dataset,
            "--report", m.PathIn("r")), "--edits");
        // everything missing named at once, not one try at a time
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--edits", "1"), "missing 4 things", "--report DIR", "--dataset FILE", "--layers", "--stats-corpus");
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--dataset", m.PathIn("none.json"), "--edits", "1", "--report", m.PathIn("r")), "none.json");
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--dataset", m.Dataset, "--edits", "1", "--layers", "1", "--report", m.PathIn("r")), "--stats-corpus");
        CliRunner.AssertBadInput(CliRunner.Run("lifelong", m.Model, "--dataset", m.Dataset, "--edits", "1", "--batch", "2", "--layers", "1",
            "--stats-corpus", "facts:" + m.Dataset, "--report", m.PathIn("r")), "--batch");
    }

    [Fact]
    public void Lifelong_report_sets_runs_side_by_side_and_marks_a_partial_one()
    {
        using var m = new TinyGpt2Folder();
        static string Run(string method, int batch, bool complete, params (int Edits, double S)[] cps) => $$"""
            {"method": "{{method}}", "model": "/m/tiny", "dataset": "/d/facts.json", "edits": 8, "complete": {{(complete ? "true" : "false")}},
             "batch": {{batch}}, "held_out": 2, "hparams": {{(method == "WilKE" ? """{"layers": [17], "scanning_ceiling": 3}""" : """{"layers": [1]}""")}},
             "checkpoints": [{{string.Join(", ", cps.Select(c => $$"""{"edits": {{c.Edits}}, "ES": 1, "GS": 0.5, "LS": null, "ERS": 1, "ORS": 1, "S": {{c.S.ToString(System.Globalization.CultureInfo.InvariantCulture)}}, "delta_norms": {"0": 3, "1": {{c.Edits}} } }"""))}}]}
            """;
        string a = m.PathIn("a"), b = m.PathIn("b"), w = m.PathIn("w"), outDir = m.PathIn("out");
        Directory.CreateDirectory(a); Directory.CreateDirectory(b); Directory.CreateDirectory(w);
        File.WriteAllText(Path.Combine(a, "lifelong.json"), Run("ROME", 1, true, (1, 0.9), (2, 0.8), (4, 0.7), (8, 0.6)));
        File.WriteAllText(Path.Combine(b, "lifelong.json"), Run("MEMIT", 2, false, (2, 0.95), (4, 0.85)));
        File.WriteAllText(Path.Combine(w, "lifelong.json"), Run("WilKE", 1, true, (8, 0.7)));
        string a2 = m.PathIn("rome-other");
        Directory.CreateDirectory(a2);
        File.WriteAllText(Path.Combine(a2, "lifelong.json"), Run("ROME", 1, true, (8, 0.5)));
        // a run with the first one's values at every checkpoint (as WilKE has ROME's when it always picks ROME's layer)
        string same = m.PathIn("same");
        Directory.CreateDirectory(same);
        File.WriteAllText(Path.Combine(same, "lifelong.json"), Run("MEMIT", 1, true, (1, 0.9), (2, 0.8), (4, 0.7), (8, 0.6)));
        var r = CliRunner.Run("lifelong-report", a, b, w, a2, same, "--out", outDir, "--title", "two runs");
        Assert.True(r.Code == 0, r.ToString());
        string md = File.ReadAllText(Path.Combine(outDir, "lifelong-report.md"));
        Assert.StartsWith("# two runs", md);
        // two ROME runs with B = 1: their folders tell them apart
        Assert.Contains("| ROME (B=1) [a] | 8 | 1.000 | 0.500 | - | 1.000 | 1.000 | 0.600 |", md);
        Assert.Contains("| ROME (B=1) [rome-other] | 8 | 1.000 | 0.500 | - | 1.000 | 1.000 | 0.500 |", md);
        Assert.Contains("| MEMIT (B=2), partial: 4 of 8 edits | 4 | 1.000 | 0.500 | - | 1.000 | 1.000 | 0.850 |", md);
        Assert.DoesNotContain("ROME (B=1), partial", md);
        Assert.Contains("- **MEMIT (B=1)** has the values of **ROME (B=1) [a]** at every checkpoint", md);
        Assert.Single(md.Split('\n'), l => l.Contains("has the values of"));
        // WilKE's line names the layers it scans, not ROME's unused default layer
        Assert.Contains("**ROME (B=1) [a]**: 8 edits of facts.json on tiny, 2 held-out facts, layers from the hparams: [1]", md);
        Assert.Contains("**WilKE (B=1)**: 8 edits of facts.json on tiny, 2 held-out facts, layers scanned per edit: 0 to 2", md);
        // the drift over all layers: √(3² + 4²) at 4 edits
        Assert.Contains("| ROME (B=1) [a] | 4 | 1.000 | 0.500 | - | 1.000 | 1.000 | 0.700 | 5.0 |", md);
        // a run with norm anchors says so
        string nas = m.PathIn("nas");
        Directory.CreateDirectory(nas);
        File.WriteAllText(Path.Combine(nas, "lifelong.json"), Run("MEMIT", 8, true, (8, 0.6)).Replace("""{"layers": [1]}""", """{"layers": [1], "norm_anchor": true}"""));
        var withNas = CliRunner.Run("lifelong-report", a, nas, "--out", m.PathIn("out-nas"));
        Assert.True(withNas.Code == 0, withNas.ToString());
        Assert.Contains("| MEMIT + norm anchors (B=8) | 8 |", File.ReadAllText(Path.Combine(m.PathIn("out-nas"), "lifelong-report.md")));
        foreach (var metric in new[] { "ES", "GS", "LS", "ERS", "ORS", "S", "drift" })
            Assert.True(new FileInfo(Path.Combine(outDir, $"lifelong-{metric}.png")).Length > 1000, $"lifelong-{metric}.png missing or empty");
        CliRunner.AssertBadInput(CliRunner.Run("lifelong-report", a, m.PathIn("none"), "--out", outDir), "none");
    }
}
