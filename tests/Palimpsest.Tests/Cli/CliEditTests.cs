using Palimpsest.Models;

namespace Palimpsest.Tests.Cli;

public class CliEditTests
{
    private const string DownName = "transformer.h.1.mlp.c_proj.weight";

    /// <summary>A few v* steps and one short context template, so that an edit of the tiny model takes well under a second.</summary>
    private static (string Hparams, string Corpus) Inputs(TinyGpt2Folder m)
    {
        string hp = m.PathIn("rome.json"), corpus = m.PathIn("corpus.txt");
        File.WriteAllText(hp, """{"layers": [1], "v_num_grad_steps": 3, "context_template_length_params": [[3, 1]]}""");
        File.WriteAllText(corpus, "The mother tongue of Danielle Darrieux is French.\nParis is the capital of France.\nEdwin of Northumbria was a king.\n");
        return (hp, corpus);
    }

    private static float[] Down(string folder, string name = DownName)
    {
        using var f = SafetensorsFile.Open(Path.Combine(folder, "model.safetensors"));
        return f.ReadF32(name);
    }

    private static string[] Edit(TinyGpt2Folder m, string outDir, params string[] extra)
    {
        var (hp, corpus) = Inputs(m);
        return ["edit", m.Model, "--hparams", hp, "--stats-corpus", corpus, "--cache", m.PathIn("cache"), "--out", outDir, .. extra];
    }

    [Fact]
    public void Edit_is_journaled_listed_and_reverted_bit_exactly()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("edited");
        var r = CliRunner.Run(Edit(m, outDir, "--subject", "Danielle Darrieux", "--prompt", "The mother tongue of {} is", "--target", "English"));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("created", r.Out);
        var row = r.Out.Split('\n').Single(l => l.TrimStart().StartsWith("1  Danielle Darrieux  English", StringComparison.Ordinal));
        Assert.Contains("->", row); // v* loss before -> after
        // the edited layer changed, another did not
        Assert.NotEqual(Down(m.Model), Down(outDir));
        Assert.Equal(Down(m.Model, "transformer.h.0.mlp.c_proj.weight"), Down(outDir, "transformer.h.0.mlp.c_proj.weight"));

        var j = CliRunner.Run("journal", outDir);
        Assert.True(j.Code == 0, j.ToString());
        Assert.Contains("1 edit(s), 1 active", j.Out);
        Assert.Matches(@"\n\s*1  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  rome\s+Danielle Darrieux\s+English\s+1\s+\d+\.\d{4}\s+active", j.Out);

        var rv = CliRunner.Run("revert", outDir, "1");
        Assert.True(rv.Code == 0, rv.ToString());
        Assert.Contains("reverted edit 1", rv.Out);
        Assert.Equal(Down(m.Model), Down(outDir));
        Assert.Contains("0 active", CliRunner.Run("journal", outDir).Out);
        CliRunner.AssertBadInput(CliRunner.Run("revert", outDir, "1"), "already reverted");
    }

    /// <summary>
    /// WilKE through the CLI: the edit lands on the layer its scan chose (shown, journaled) and reverts
    /// bit-exactly. All three layers are scanned; at the last one δ at the subject has no gradient
    /// (nothing after it carries the subject's position to the prediction), so its zero delta must not win.
    /// </summary>
    [Fact]
    public void Wilke_edit_records_its_layer_and_reverts_bit_exactly()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("edited"), hp = m.PathIn("wilke.json");
        var (_, corpus) = Inputs(m);
        File.WriteAllText(hp, """{"scanning_ceiling": 3, "v_loss_layer": 2, "v_num_grad_steps": 3, "context_template_length_params": [[3, 1]]}""");
        var r = CliRunner.Run("edit", m.Model, "--method", "wilke", "--hparams", hp, "--stats-corpus", corpus, "--cache", m.PathIn("cache"),
            "--out", outDir, "--subject", "Danielle Darrieux", "--prompt", "The mother tongue of {} is", "--target", "English");
        Assert.True(r.Code == 0, r.ToString());
        var match = System.Text.RegularExpressions.Regex.Match(r.Out, @"layer (\d) \(LA ");
        Assert.True(match.Success, r.Out);
        int chosen = int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        for (int l = 0; l < TinyGpt2Folder.Layers; l++)
        {
            string name = $"transformer.h.{l}.mlp.c_proj.weight";
            if (l == chosen) Assert.True(!Down(m.Model, name).SequenceEqual(Down(outDir, name)), $"layer {l} should have changed:\n{r.Out}");
            else Assert.Equal(Down(m.Model, name), Down(outDir, name));
        }
        Assert.Matches($@"\n\s*1  \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d  wilke\s+Danielle Darrieux\s+English\s+{chosen}\s", CliRunner.Run("journal", outDir).Out);
        Assert.True(CliRunner.Run("revert", outDir, "1").Code == 0);
        for (int l = 0; l < TinyGpt2Folder.Layers; l++)
            Assert.Equal(Down(m.Model, $"transformer.h.{l}.mlp.c_proj.weight"), Down(outDir, $"transformer.h.{l}.mlp.c_proj.weight"));
        CliRunner.AssertBadInput(CliRunner.Run("edit", m.Model, "--method", "wilke", "--hparams", m.PathIn("rome.json"), "--stats-corpus", corpus,
            "--out", m.PathIn("other"), "--subject", "Danielle Darrieux", "--prompt", "The mother tongue of {} is", "--target", "English"), "scanning_ceiling");
    }

    [Fact]
    public void Edit_from_a_requests_file_applies_each_in_turn_and_reopening_adds_more()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("edited");
        var r = CliRunner.Run(Edit(m, outDir, "--requests", m.Dataset));
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("Edwin of Northumbria  Islam", r.Out);
        var again = CliRunner.Run(Edit(m, outDir, "--requests", m.Dataset, "--limit", "1"));
        Assert.True(again.Code == 0, again.ToString());
        Assert.Contains("editing", again.Out);
        Assert.Contains("3  Danielle Darrieux", again.Out);
        var j = CliRunner.Run("journal", outDir);
        Assert.Contains("3 edit(s), 3 active", j.Out);
    }

    [Fact]
    public void Edit_bad_inputs_are_one_error_line_and_create_nothing()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("edited");
        string[] fact = ["--subject", "Danielle Darrieux", "--prompt", "The mother tongue of {} is", "--target", "English"];
        CliRunner.AssertBadInput(CliRunner.Run([.. Edit(m, outDir, fact), "--batch", "2"]), "--batch", "one request at a time");
        CliRunner.AssertBadInput(CliRunner.Run([.. Edit(m, outDir, fact), "--layers", "0,1"]), "ROME edits one layer");
        CliRunner.AssertBadInput(CliRunner.Run([.. Edit(m, outDir, fact), "--method", "alphaedit", "--layers", "0,5"]), "layer 5");
        CliRunner.AssertBadInput(CliRunner.Run([.. Edit(m, outDir, fact), "--method", "fine-tune"]), "unknown method");
        CliRunner.AssertBadInput(CliRunner.Run([.. Edit(m, outDir, fact), "--layer", "7"]), "layer 7", "0..2");
        CliRunner.AssertBadInput(CliRunner.Run(Edit(m, outDir, "--subject", "Edwin", "--prompt", "The mother tongue of Danielle is", "--target", "English")),
            "does not contain the subject");
        string broken = m.PathIn("broken.json");
        File.WriteAllText(broken, """[{"prompt": "a {} b", "subject": "x", "target_new": "y" """);
        CliRunner.AssertBadInput(CliRunner.Run(Edit(m, outDir, "--requests", broken)), "broken.json", "malformed JSON");
        File.WriteAllText(m.PathIn("rome.json"), "{\"layers\": [1],");
        CliRunner.AssertBadInput(CliRunner.Run(["edit", m.Model, "--hparams", m.PathIn("rome.json"), .. fact, "--stats-corpus", m.Dataset, "--out", outDir]), "rome.json");
        CliRunner.AssertBadInput(CliRunner.Run(["edit", m.Model, "--layer", "1", .. fact, "--out", outDir]), "--stats-corpus");
        CliRunner.AssertBadInput(CliRunner.Run(["edit", m.Model, "--layer", "1", .. fact, "--stats-corpus", "facts:" + m.PathIn("gone.json"), "--out", outDir]), "gone.json");
        Assert.False(Directory.Exists(outDir), "a rejected edit must not create the output folder");

        CliRunner.AssertBadInput(CliRunner.Run("journal", m.Model), "journal not found");
        CliRunner.AssertBadInput(CliRunner.Run("revert", m.PathIn("nowhere"), "1"), "nowhere");
    }

    [Fact]
    public void Memit_edits_a_batch_as_one_journal_entry_and_alphaedit_protects_the_journaled_keys()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("edited"), hp = m.PathIn("few-steps.json");
        File.WriteAllText(hp, """{"v_num_grad_steps": 2}""");
        string[] common = ["--hparams", hp, "--layers", "0,1", "--stats-corpus", "facts:" + m.Dataset, "--cache", m.PathIn("cache"), "--out", outDir];
        var r = CliRunner.Run(["edit", m.Model, "--method", "memit", "--requests", m.Dataset, .. common]);
        Assert.True(r.Code == 0, r.ToString());
        // both requests in edit 1, with MEMIT's z* loss
        Assert.Matches(@"\n\s*1  Danielle Darrieux\s+English\s+0,1\s+\d+\.\d{4}\s+\d+\.\d{3} -> \d+\.\d{3}", r.Out);
        Assert.Matches(@"\n\s*1  Edwin of Northumbria\s+Islam", r.Out);

        var a = CliRunner.Run(["edit", m.Model, "--method", "alphaedit", "--subject", "Danielle Darrieux", "--prompt", "{} speaks", "--target", "Dutch", .. common]);
        Assert.True(a.Code == 0, a.ToString());
        Assert.Contains("2  Danielle Darrieux  Dutch", a.Out);
        var b = CliRunner.Run(["edit", m.Model, "--method", "alphaedit", "--subject", "Edwin of Northumbria", "--prompt", "{} follows", "--target", "Islam", .. common]);
        Assert.True(b.Code == 0, b.ToString());
        Assert.Contains("alphaedit: continuing from the journal's 1 earlier edit(s) (1 request(s))", b.Out);
        var j = CliRunner.Run("journal", outDir);
        Assert.Contains("3 edit(s), 3 active", j.Out);
        Assert.Contains("memit      Danielle Darrieux (+1 more)", j.Out);
    }

    [Fact]
    public void Edit_takes_the_model_folders_hparams_and_corpus_or_names_everything_missing_at_once()
    {
        using var m = new TinyGpt2Folder();
        string[] fact = ["--subject", "Danielle Darrieux", "--prompt", "The mother tongue of {} is", "--target", "English"];
        // nothing in the folder, no options: one message with all three
        CliRunner.AssertBadInput(CliRunner.Run(["edit", m.Model, .. fact]), "missing 3 things", "--out DIR", "--layers", "rome.json", "--stats-corpus", "corpus.txt");
        // a folder that carries rome.json and corpus.txt (as data/models/facts-d128-l5 does) needs neither option
        var (hp, corpus) = Inputs(m);
        File.Copy(hp, Path.Combine(m.Model, "rome.json"));
        File.Copy(corpus, Path.Combine(m.Model, "corpus.txt"));
        var r = CliRunner.Run(["edit", m.Model, .. fact, "--cache", m.PathIn("cache"), "--out", m.PathIn("edited")]);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains($"rome: hyper-parameters from the model folder's {Path.Combine(m.Model, "rome.json")}", r.Err);
        Assert.Contains($"key statistics from the model folder's {Path.Combine(m.Model, "corpus.txt")}", r.Err);
        Assert.Contains("1  Danielle Darrieux  English  1", r.Out);
    }

    [Fact]
    public void An_edit_that_does_not_take_says_so_journals_it_and_fails_with_require_success()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("edited");
        // three v* steps on a random model: the prompt keeps its old answer
        var r = CliRunner.Run(Edit(m, outDir, "--subject", "Danielle Darrieux", "--prompt", "The mother tongue of {} is", "--target", "English", "--require-success"));
        Assert.True(r.Code == 3, r.ToString());
        Assert.Contains("warning: edit 1 did not take for 1 of 1 request(s): \"The mother tongue of Danielle Darrieux is\" answers", r.Err);
        Assert.Contains("not \" English\"", r.Err);
        Assert.Contains("palimpsest trace", r.Err);
        Assert.Contains("1  Danielle Darrieux  English", r.Out); // applied and journaled all the same
        var j = CliRunner.Run("journal", outDir);
        Assert.Contains("1 edit(s), 1 active", j.Out);
        Assert.Contains("edit 1: did not take for 1 of 1 request(s)", j.Out);
        // without the flag: the same warning, exit 0
        var again = CliRunner.Run(Edit(m, outDir, "--subject", "Edwin of Northumbria", "--prompt", "The official religion of {} is", "--target", "Islam"));
        Assert.True(again.Code == 0, again.ToString());
        Assert.Contains("warning: edit 2 did not take", again.Err);
    }

    [Fact]
    public void Bad_requests_are_refused_naming_the_record_before_anything_is_created()
    {
        using var m = new TinyGpt2Folder();
        var (hp, corpus) = Inputs(m);
        string outDir = m.PathIn("edited"), many = m.PathIn("many.json"), longer = m.PathIn("long.json");
        File.WriteAllText(many, """[{"prompt": "The mother tongue of Danielle Darrieux is", "subject": "Danielle Darrieux", "target_new": ["English", "Dutch"]}]""");
        CliRunner.AssertBadInput(CliRunner.Run("edit", m.Model, "--hparams", hp, "--stats-corpus", corpus, "--requests", many, "--out", outDir), "record 0", "target_new", "list of 2");
        string words = string.Join(" ", Enumerable.Repeat("very", 70));
        File.WriteAllText(longer, "[" + """{"prompt": "The mother tongue of Lyon is", "subject": "Lyon", "target_new": "English"}""" + ", "
            + $$"""{"prompt": "The {{words}} mother tongue of Danielle Darrieux is", "subject": "Danielle Darrieux", "target_new": "English"}""" + "]");
        CliRunner.AssertBadInput(CliRunner.Run("edit", m.Model, "--hparams", hp, "--stats-corpus", corpus, "--requests", longer, "--out", outDir),
            "request 1 (Danielle Darrieux)", "longer than the model's context of 64", "n_positions");
        Assert.False(Directory.Exists(outDir), "the folder was created for requests that cannot be edited");
        CliRunner.AssertBadInput(CliRunner.Run("trace", m.Model, "--prompt", "The mother tongue of Lyon is", "--subject", "Lyon", "--answer", ""), "--answer is empty");
    }

    [Fact]
    public async Task The_folder_is_held_only_while_a_batch_is_applied()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("edited"), hp = m.PathIn("slow.json");
        // every v* step runs (no early stop): the second batch computes long enough to act in between
        File.WriteAllText(hp, """{"layers": [1], "v_num_grad_steps": 600, "v_early_stop_loss": 0, "context_template_length_params": [[3, 1]]}""");
        var edit = Task.Run(() => CliRunner.Run("edit", m.Model, "--hparams", hp, "--stats-corpus", "facts:" + m.Dataset, "--requests", m.Dataset,
            "--batch", "1", "--cache", m.PathIn("cache"), "--out", outDir));
        // once the first batch is in, journal and revert work while the second computes
        var clock = System.Diagnostics.Stopwatch.StartNew();
        CliRunner.Result j;
        do
        {
            Thread.Sleep(20);
            j = CliRunner.Run("journal", outDir);
        } while (!j.Out.Contains("1 edit(s)") && clock.Elapsed < TimeSpan.FromSeconds(60) && !edit.IsCompleted);
        Assert.True(j.Code == 0 && j.Out.Contains("1 edit(s), 1 active"), $"journal while the edit computes:\n{j}\nedit:\n{(edit.IsCompleted ? (await edit).ToString() : "running")}");
        Assert.False(edit.IsCompleted, "the second batch finished before the test could act: make it slower");
        var revert = CliRunner.Run("revert", outDir, "1");
        Assert.True(revert.Code == 0, revert.ToString());
        // the second batch was computed on weights that changed under it: refused, not applied
        var r = await edit;
        Assert.True(r.Code == 2, r.ToString());
        var error = Assert.Single(r.ErrLines, l => l.StartsWith("palimpsest: error: ", StringComparison.Ordinal));
        Assert.Contains("changed while edit 2 was computed", error);
        Assert.Contains("generation 1 -> 2", error);
        Assert.Contains("1  Danielle Darrieux  English", r.Out); // the batch applied before it is reported
        var after = CliRunner.Run("journal", outDir);
        Assert.Contains("1 edit(s), 0 active", after.Out);
    }

    [Fact]
    public void Statistics_too_small_for_the_layer_are_named_not_a_matrix_error()
    {
        using var m = new TinyGpt2Folder();
        var (hp, _) = Inputs(m);
        string tiny = m.PathIn("tiny-corpus.txt");
        File.WriteAllText(tiny, "The mother tongue of Danielle Darrieux is French.\nParis is the capital of France.\n");
        var r = CliRunner.Run("edit", m.Model, "--hparams", hp, "--stats-corpus", tiny, "--cache", m.PathIn("cache"), "--subject", "Lyon", "--prompt", "{} is in",
            "--target", "Manila", "--out", m.PathIn("edited"));
        CliRunner.AssertBadInput(r, "key statistics C of layer 1", "not positive definite", "--stats-corpus");
        Assert.False(Directory.Exists(m.PathIn("edited")), "the folder this failed command created was left behind");
    }

    [Fact]
    public void Eval_prints_counterfact_and_zsre_tables()
    {
        using var m = new TinyGpt2Folder();
        var r = CliRunner.Run("eval", m.Model, "--dataset", m.Dataset);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Contains("2 record(s), CounterFactEasyEdit", r.Out);
        // two cases of one prompt each: a success rate is 0, 0.5 or 1
        var eff = r.Out.Split('\n').Single(l => l.StartsWith("efficacy (rewrite)", StringComparison.Ordinal)).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(eff[2], new[] { "0.0000", "0.5000", "1.0000" });
        Assert.Contains("score S", r.Out);

        string zsre = m.PathIn("zsre.json");
        File.WriteAllText(zsre, """
            [{"subject": "Danielle Darrieux", "src": "What is the mother tongue of Danielle Darrieux?", "pred": "French", "rephrase": "Which language does Danielle Darrieux speak?",
              "alt": "English", "answers": ["French"], "loc": "nq question: who wrote hamlet", "loc_ans": "Shakespeare", "cond": "x"}]
            """);
        var z = CliRunner.Run("eval", m.Model, "--dataset", zsre);
        Assert.True(z.Code == 0, z.ToString());
        Assert.Contains("1 record(s), Zsre", z.Out);
        Assert.Matches(@"generalization\s+\d\.\d{4}", z.Out);
    }

    [Fact]
    public void Eval_bad_inputs_are_one_error_line()
    {
        using var m = new TinyGpt2Folder();
        CliRunner.AssertBadInput(CliRunner.Run("eval", m.Model, "--dataset", m.PathIn("none.json")), "none.json");
        CliRunner.AssertBadInput(CliRunner.Run("eval", m.Model, "--dataset", m.Dataset, "--limit", "0"), "--limit");
        string known = m.PathIn("known.json");
        File.WriteAllText(known, """[{"known_id": 0, "subject": "Paris", "attribute": "France", "template": "{} is in", "prompt": "Paris is in", "relation_id": "P17"}]""");
        CliRunner.AssertBadInput(CliRunner.Run("eval", m.Model, "--dataset", known), "known-facts");
    }
}
