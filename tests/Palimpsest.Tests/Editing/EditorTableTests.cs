using System.Text.RegularExpressions;
using MathNet.Numerics.LinearAlgebra;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Journal;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tests.Cli;
using Palimpsest.Tests.Journal;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Editing;

/// <summary>The editor table: one name per method, strict hyper-parameters, capabilities instead of name checks, journaled memory.</summary>
public class EditorTableTests
{
    private static readonly EditRequest[] Requests = EditingFixtures.Requests[..2];

    [Fact]
    public void Every_method_has_one_name_that_its_editor_and_the_journal_use()
    {
        var c = EditingFixtures.Gpt2Vocab(4, 20, 2, 36);
        var tok = TokenizerFactory.Gpt2(c);
        var cm = EditingFixtures.RandomSpd(c.DFf, 3);
        Assert.Equal(["rome", "memit", "alphaedit", "wilke", "ultraedit", "lemoe"], Editors.All.Select(k => k.Name));
        foreach (var kind in Editors.All)
        {
            // UltraEdit has no default layers (the reference names its modules per model)
            var settings = kind.Parse(kind.Has(EditorCapabilities.ChoosesLayer) ? """{"scanning_ceiling": 2}""" : kind == Editors.UltraEdit ? """{"layers": [0]}""" : "{}");
            if (!kind.Has(EditorCapabilities.ChoosesLayer)) settings = settings.WithLayers([1]);
            var editor = settings.Create(tok, _ => cm);
            Assert.Equal(kind.Name, editor.Method);
            Assert.Same(kind, Editors.Get(kind.Name.ToUpperInvariant())); // journals before the table wrote "ROME", "AlphaEdit"
        }
        Assert.Contains("rome, memit, alphaedit, wilke, ultraedit or lemoe", Assert.Throws<ArgumentException>(() => Editors.Get("mend")).Message);
        Assert.Throws<ArgumentException>(() => Editors.Wilke.Parse("""{"scanning_ceiling": 2}""").WithLayers([1]));
        Assert.Throws<ArgumentException>(() => Editors.Rome.Parse("{}").WithLayers([1, 2]));
        // layers given to Parse go in before the settings are checked, in each method's own field:
        // UltraEdit's defaults name no layer (alone they are refused), LEMoE's field is "layer"
        Assert.Throws<ArgumentException>(() => Editors.UltraEdit.Parse("{}"));
        Assert.Equal([3], Editors.UltraEdit.Parse("{}", layers: [3]).Layers);
        Assert.Equal([2], Editors.Lemoe.Parse("{}", layers: [2]).Layers);
        Assert.Contains("not valid JSON", Assert.Throws<ArgumentException>(() => Editors.Memit.Parse("{oops", "f.json", [1])).Message);
    }

    [Fact]
    public void A_misspelt_alphaedit_field_is_refused_naming_it()
    {
        // before the table the CLI read AlphaEdit's file by reflection, which ran on with the default threshold
        using var m = new TinyGpt2Folder();
        string hp = m.PathIn("alphaedit.json");
        File.WriteAllText(hp, """{"layers": [1], "nullspace_treshold": 0.1}""");
        CliRunner.AssertBadInput(CliRunner.Run("edit", m.Model, "--method", "alphaedit", "--hparams", hp, "--subject", "Lyon", "--prompt", "{} is in",
            "--target", "Manila", "--stats-corpus", "facts:" + m.Dataset, "--out", m.PathIn("out")), "'nullspace_treshold'", "alphaedit.json");
        Assert.Contains("'nullspace_treshold'", Assert.Throws<ArgumentException>(() => AlphaEditHparams.FromJson("""{"nullspace_treshold": 0.1}""")).Message);
    }

    [Fact]
    public void Reference_files_load_with_their_harness_fields_ignored_and_reported_once()
    {
        using var m = new TinyGpt2Folder();
        // kmeng01/rome hparams/ROME/gpt2-xl.json's fields, the layer and steps made to fit the tiny model
        string hp = m.PathIn("rome-reference.json");
        File.WriteAllText(hp, """
            {"layers": [1], "fact_token": "subject_last", "v_num_grad_steps": 2, "v_lr": 5e-1, "v_loss_layer": 47, "v_weight_decay": 0.5,
             "clamp_norm_factor": 4, "kl_factor": 0.0625, "mom2_adjustment": true, "context_template_length_params": [[3, 1]],
             "rewrite_module_tmp": "transformer.h.{}.mlp.c_proj", "layer_module_tmp": "transformer.h.{}", "mlp_module_tmp": "transformer.h.{}.mlp",
             "attn_module_tmp": "transformer.h.{}.attn", "ln_f_module": "transformer.ln_f", "lm_head_module": "transformer.wte",
             "mom2_dataset": "wikipedia", "mom2_n_samples": 100000, "mom2_dtype": "float32"}
            """);
        var r = CliRunner.Run("edit", m.Model, "--hparams", hp, "--subject", "Lyon", "--prompt", "{} is in", "--target", "Manila",
            "--stats-corpus", "facts:" + m.Dataset, "--cache", m.PathIn("cache"), "--out", m.PathIn("out"));
        Assert.True(r.Code == 0, r.ToString());
        var ignored = r.ErrLines.Where(l => l.Contains("ignored the reference's harness field(s)")).ToList();
        Assert.Single(ignored);
        Assert.Contains("rewrite_module_tmp", ignored[0]);
        Assert.Contains("mom2_dataset", ignored[0]);
        // MEMIT's and AlphaEdit's reference files too (AlphaEdit's carry MEMIT's mom2 fields, unused by its update)
        Assert.Equal(["mom2_dataset", "layer_module_tmp"], Editors.Memit.Parse("""{"mom2_dataset": "wikipedia", "layer_module_tmp": "x", "layers": [2]}""").IgnoredFields);
        Assert.Equal(["mom2_update_weight"], Editors.AlphaEdit.Parse("""{"mom2_update_weight": 20000}""").IgnoredFields);
        // a field that neither we nor the reference know is still refused
        Assert.Contains("'v_lrr'", Assert.Throws<ArgumentException>(() => Editors.Rome.Parse("""{"mom2_dataset": "wikipedia", "v_lrr": 1}""")).Message);
    }

    [Fact]
    public void Memit_without_mom2_adjustment_solves_the_plain_ridge_without_statistics()
    {
        using var s = new EditingFixtures.Small();
        var (c, tf) = (s.Config, s.Tf);
        var hp = new MemitHparams { Layers = [1], VLossLayer = 3, VNumGradSteps = 3, Mom2UpdateWeight = 4, Mom2Adjustment = false };
        var settings = Editors.Memit.Parse(hp.ToJson());
        Assert.False(settings.NeedsKeyStatistics);
        // before: "asked for the statistics ... without mom2_adjustment"
        var memit = (Memit)settings.Create(s.Tok, l => throw new InvalidOperationException($"statistics of layer {l} asked for"));
        var delta = memit.ComputeDeltas(tf, Requests).Single();
        var (_, K, R) = memit.LastSolves!.Single();
        var dW = Matrix<double>.Build.DenseOfRowMajor(c.DFf, c.DModel, delta.ToDense());
        var lhs = (Matrix<double>.Build.DenseIdentity(c.DFf) * 4 + K * K.Transpose()) * dW;
        Num.AssertClose(lhs.ToRowMajorArray(), (K * R.Transpose()).ToRowMajorArray(), 1e-10, "(λI + KKᵀ) ΔW = K Rᵀ");
    }

    [Fact]
    public void A_loss_layer_below_the_models_last_is_refused_rather_than_ignored()
    {
        using var s = new EditingFixtures.Small();
        var (tf, tok) = (s.Tf, s.Tok);
        var cm = EditingFixtures.RandomSpd(s.Config.DFf, 3);
        var rome = new Rome(new RomeHparams { Layers = [1], VLossLayer = 1, VNumGradSteps = 2, ContextTemplateLengthParams = [[3, 1]] }, tok, _ => cm);
        var e = Assert.Throws<ArgumentException>(() => rome.ComputeDeltas(tf, Requests.Take(1).ToArray()));
        Assert.Contains("v_loss_layer 1", e.Message);
        Assert.Contains("v_loss_layer 2", Assert.Throws<ArgumentException>(() => new Memit(new MemitHparams { Layers = [1], VLossLayer = 2 }, tok, _ => cm).ComputeDeltas(tf, Requests)).Message);
        // the model's last layer, or the reference's GPT2-XL default (47, its last layer), is the output
        new Rome(new RomeHparams { Layers = [1], VLossLayer = 3, VNumGradSteps = 2, ContextTemplateLengthParams = [[3, 1]] }, tok, _ => cm).ComputeDeltas(tf, Requests.Take(1).ToArray());
        new Rome(new RomeHparams { Layers = [1], VNumGradSteps = 2, ContextTemplateLengthParams = [[3, 1]] }, tok, _ => cm).ComputeDeltas(tf, Requests.Take(1).ToArray());
    }

    [Fact]
    public void Alphaedit_finds_its_journaled_edits_whatever_the_method_column_says()
    {
        // the CLI used to remember only entries saying "alphaedit", while the library journaled "AlphaEdit"
        using var m = new TinyGpt2Folder();
        string dir = m.PathIn("edited");
        using var em = EditedModel.Create(m.Model, dir);
        em.Apply([JournalFixtures.RandomDelta(3, 1, layers: 3, f: 24, d: 16)], new EditRecord { Method = "AlphaEdit", Requests = Requests.Take(1).ToArray() });
        em.Apply([JournalFixtures.RandomDelta(4, 1, layers: 3, f: 24, d: 16)], new EditRecord { Method = Editors.AlphaEdit.Name, Requests = Requests.Skip(1).ToArray() });
        em.Apply([JournalFixtures.RandomDelta(5, 1, layers: 3, f: 24, d: 16)], new EditRecord { Method = "rome", Requests = Requests.Take(1).ToArray() });
        var active = em.ActiveEdits("alphaedit");
        Assert.Equal(["Danielle Darrieux", "Lyon"], active.Select(e => e.Requests.Single().Subject));
        Assert.Equal("The mother tongue of {} is", active[0].Requests[0].Prompt);
    }

    [Fact]
    public void Ultraedit_moments_are_journaled_continued_on_reopening_and_restored_by_revert()
    {
        using var m = new TinyGpt2Folder();
        string dir = m.PathIn("edited");
        var hp = new UltraEditHparams { Layers = [0, 2], Lr = 0.05 };
        var em = EditedModel.Create(m.Model, dir);
        using var b = new ReferenceBackend();
        using var model = Model.Load(dir, b);
        using var tf = new Transformer(model);
        var tok = TokenizerFactory.Gpt2(model.Config);
        var live = new UltraEdit(hp, tok);
        var moments = new List<RowMoments>();
        foreach (var batch in new[] { Requests.Take(1).ToArray(), Requests.Skip(1).ToArray() })
        {
            var deltas = live.ComputeDeltas(tf, batch);
            em.Apply(deltas, new EditRecord { Method = live.Method, Requests = batch, HyperParametersJson = hp.ToJson(), EditorMemory = live.LastMemoryContribution });
            foreach (var d in deltas) model.SetDownProjection(d.Layer, em.ReadDownProjection(d.Layer).ToDouble());
            moments.Add(live.Normalizer.Moments(24, 16));
        }
        em.Dispose(); // one process, one open journal
        using (var reopened = EditedModel.Open(dir))
        {
            var again = new UltraEdit(hp, tok);
            Assert.Equal(2, reopened.Reopen(again, tf));
            Assert.Equal(moments[1].Count, again.Normalizer.Moments(24, 16).Count);
            Assert.Equal(moments[1].Mean, again.Normalizer.Moments(24, 16).Mean);
            Assert.Equal(moments[1].M2, again.Normalizer.Moments(24, 16).M2);
            reopened.Revert(2);
            var afterRevert = new UltraEdit(hp, tok);
            Assert.Equal(1, reopened.Reopen(afterRevert, tf));
            Assert.Equal(moments[0].Mean, afterRevert.Normalizer.Moments(24, 16).Mean);
            Assert.Equal(moments[0].M2, afterRevert.Normalizer.Moments(24, 16).M2);
        }
    }

    [Fact]
    public void The_cli_edits_with_ultraedit_in_batches_and_a_reopened_folder_continues_its_moments()
    {
        using var m = new TinyGpt2Folder();
        string outDir = m.PathIn("edited"), hp = m.PathIn("ultraedit.json");
        File.WriteAllText(hp, """{"layers": [0, 2], "lr": 0.05}""");
        var r = CliRunner.Run("edit", m.Model, "--method", "ultraedit", "--hparams", hp, "--requests", m.Dataset, "--batch", "1", "--out", outDir);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Matches(@"\n\s*1  Danielle Darrieux\s+English\s+0,2", r.Out);
        Assert.Matches(@"\n\s*2  Edwin of Northumbria", r.Out);
        var again = CliRunner.Run("edit", outDir, "--method", "ultraedit", "--hparams", hp, "--subject", "Lyon", "--prompt", "{} is in", "--target", "Manila", "--out", outDir);
        Assert.True(again.Code == 0, again.ToString());
        Assert.Contains("ultraedit: continuing from the journal's 2 earlier edit(s) (2 request(s))", again.Out);
        Assert.Equal(0, CliRunner.Run("revert", outDir, "3").Code);
        Assert.Equal(0, CliRunner.Run("revert", outDir, "2").Code);
        var third = CliRunner.Run("edit", outDir, "--method", "ultraedit", "--hparams", hp, "--subject", "Lyon", "--prompt", "{} is in", "--target", "Manila", "--out", outDir);
        Assert.Contains("ultraedit: continuing from the journal's 1 earlier edit(s) (1 request(s))", third.Out);
    }

    [Fact]
    public void The_cli_names_no_method_and_tests_no_editor_type()
    {
        // the commands branch on capabilities of the library's table; a method name or editor type in
        // their code would be a special case the table cannot see
        string cli = Path.Combine(Paths.RepoRoot, "managed", "Palimpsest.Cli");
        var names = string.Join("|", Editors.All.Select(k => k.Name));
        var literal = new Regex($"\"({names})\"", RegexOptions.IgnoreCase);
        var typeTest = new Regex(@"\bis (Rome|Memit|AlphaEdit|Wilke|UltraEdit|Lemoe)\b|\(\s*(Rome|Memit|AlphaEdit|Wilke|UltraEdit|Lemoe)\s*\)\s*\w");
        var found = new List<string>();
        // Parity/ is exempt: `palimpsest parity` compares our ROME and MEMIT with the official code of exactly those two
        var exempt = new[] { "obj", "Parity" }.Select(d => $"{Path.DirectorySeparatorChar}{d}{Path.DirectorySeparatorChar}").ToArray();
        foreach (var file in Directory.EnumerateFiles(cli, "*.cs", SearchOption.AllDirectories).Where(f => !exempt.Any(f.Contains)))
        {
            var lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
                if (!lines[i].TrimStart().StartsWith("///") && (literal.IsMatch(lines[i]) || typeTest.IsMatch(lines[i])))
                    found.Add($"{Path.GetRelativePath(cli, file)}:{i + 1}: {lines[i].Trim()}");
        }
        Assert.True(found.Count == 0, "method names or editor types in the CLI:\n" + string.Join("\n", found));
    }
}
