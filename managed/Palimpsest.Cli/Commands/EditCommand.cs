using System.CommandLine;
using System.Globalization;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Journal;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest edit MODEL --method rome --subject S --prompt "The mother tongue of {} is" --target English
/// [--layer L] [--hparams FILE.json] [--stats-corpus FILE|facts:PATH] --out DIR`, or `--requests FILE.json`
/// (applied one after another). The edited folder at --out is created from MODEL (or reopened when it
/// already is one, so edits accumulate); each delta is computed on its current weights and applied
/// through the journal, so it can be listed and reverted.
/// </summary>
internal static class EditCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var method = new Option<string>("--method") { Description = "editing method: rome (memit and alphaedit are not implemented yet)", DefaultValueFactory = _ => "rome" };
        var subject = new Option<string?>("--subject") { Description = "the subject whose fact is rewritten, e.g. \"Danielle Darrieux\"" };
        var prompt = new Option<string?>("--prompt") { Description = "rewriting prompt with {} for the subject, e.g. \"The mother tongue of {} is\" (or with the subject written in)" };
        var target = new Option<string?>("--target") { Description = "the new object, e.g. English" };
        var requests = new Option<string?>("--requests") { Description = "JSON file of edit requests (CounterFact, ROME CounterFact or zsRE layout), applied in order" };
        var limit = new Option<int?>("--limit") { Description = "with --requests: apply only the first N" };
        var layer = new Option<int?>("--layer") { Description = "the MLP layer ROME edits (overrides the hparams file's layers)" };
        var hparams = new Option<string?>("--hparams") { Description = "ROME hyper-parameters JSON (reference names: layers, v_num_grad_steps, v_lr, ...)" };
        var corpus = KeyStatsOptions.Corpus("--stats-corpus");
        var limitTokens = KeyStatsOptions.LimitTokens();
        var cache = KeyStatsOptions.Cache();
        var outDir = new Option<string>("--out") { Description = "edited-model folder: created from MODEL, or reopened if it already holds a journal", Required = true };
        var cmd = new Command("edit", "rewrite facts in a model's weights (journaled and revertible)")
            { model, method, subject, prompt, target, requests, limit, layer, hparams, corpus, limitTokens, cache, outDir };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            string m = pr.GetValue(method)!.ToLowerInvariant();
            if (m is "memit" or "alphaedit") throw new CliUsageException($"--method {m}: not implemented yet (only rome exists today)");
            if (m != "rome") throw new CliUsageException($"--method '{pr.GetValue(method)}': unknown method (expected rome, memit or alphaedit)");
            var reqs = Requests(pr.GetValue(subject), pr.GetValue(prompt), pr.GetValue(target), pr.GetValue(requests), pr.GetValue(limit));
            var hp = Hparams(pr.GetValue(hparams), pr.GetValue(layer));
            string source = pr.GetValue(model)!, dir = pr.GetValue(outDir)!;
            // one-line errors for a bad MODEL or layer before anything is created
            using (var ms = ModelSession.Open(source))
                if (hp.Layers[0] < 0 || hp.Layers[0] >= ms.Config.Layers)
                    throw new CliUsageException($"layer {hp.Layers[0]} is outside the model's layers 0..{ms.Config.Layers - 1}");
            if (hp.FactToken != "subject_last") throw new CliUsageException($"hparams fact_token '{hp.FactToken}': only subject_last is supported");
            if (hp.VNumGradSteps < 1) throw new CliUsageException($"hparams v_num_grad_steps must be >= 1 (got {hp.VNumGradSteps})");
            if (hp.Mom2Adjustment && pr.GetValue(corpus) is null)
                throw new CliUsageException("ROME needs the key statistics of the edited layer: give --stats-corpus FILE|facts:PATH (or mom2_adjustment: false in --hparams)");

            if (pr.GetValue(corpus) is { } spec && KeyStatsOptions.PathOf(spec) is var cpath && !File.Exists(cpath))
                throw new FileNotFoundException($"--stats-corpus: file '{cpath}' not found", cpath);
            bool existed = EditedModel.IsEditedModel(dir);
            using var em = existed ? EditedModel.Open(dir) : EditedModel.Create(source, dir);
            if (em.Recovery is not null) io.Out.WriteLine($"recovered {dir}: {em.Recovery}");
            io.Out.WriteLine(existed ? $"editing {em.Dir} (generation {em.Generation})" : $"created {em.Dir} from {source}");
            using var lm = LoadedModel.Open(em.Dir);
            int L = hp.Layers[0];

            IReadOnlyDictionary<int, KeyStatistics>? stats = null;
            if (hp.Mom2Adjustment)
            {
                var c = KeyStatsOptions.Load(pr.GetValue(corpus)!, lm);
                stats = KeyStatsOptions.GetOrCompute(lm, c, [L], KeyStatsOptions.CacheDir(pr.GetValue(cache)), pr.GetValue(limitTokens), io);
            }
            var rome = new Rome(hp, lm.Tok, l => stats![l].Matrix);
            var table = new TextTable(("edit", true), ("subject", false), ("target", false), ("layer", true), ("||dW||", true),
                ("v* loss", false), ("steps", true), ("answer before", false), ("answer after", false));
            foreach (var req in reqs)
            {
                string filled = req.FilledPrompt;
                string before = lm.GreedyAnswer(filled);
                var deltas = rome.ComputeDeltas(lm.Tf, [req]);
                long id = em.Apply(deltas, new EditRecord { Method = "rome", Requests = [req], HyperParametersJson = hp.ToJson() });
                // the in-memory weights follow the checkpoint (rounded to its dtype), so the next
                // request is computed on exactly what a reload would give
                foreach (var d in deltas) lm.Model.SetDownProjection(d.Layer, em.ReadDownProjection(d.Layer).ToDouble());
                string after = lm.GreedyAnswer(filled);
                var t = rome.LastTrace!;
                table.Add(id.ToString(CultureInfo.InvariantCulture), req.Subject, req.TargetNew, L.ToString(CultureInfo.InvariantCulture),
                    deltas.Sum(d => d.FrobeniusNorm()).ToString("0.0000", CultureInfo.InvariantCulture),
                    $"{t.InitialLoss.ToString("0.000", CultureInfo.InvariantCulture)} -> {t.FinalLoss.ToString("0.000", CultureInfo.InvariantCulture)}",
                    t.Steps.ToString(CultureInfo.InvariantCulture), TokenText.Quote(before), TokenText.Quote(after));
                if (!Console.IsErrorRedirected && reqs.Count > 1) io.Err.WriteLine($"edit: {id} applied ({req.Subject} -> {req.TargetNew})");
            }
            table.WriteTo(io.Out);
            io.Out.WriteLine($"journal: {em.JournalPath} (generation {em.Generation}); undo with: palimpsest revert {dir} EDIT_ID");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    private static IReadOnlyList<EditRequest> Requests(string? subject, string? prompt, string? target, string? file, int? limit)
    {
        if (file is not null)
        {
            if (subject is not null || prompt is not null || target is not null)
                throw new CliUsageException("give either --requests FILE or --subject/--prompt/--target, not both");
            if (limit is <= 0) throw new CliUsageException($"--limit: must be a positive integer (got {limit})");
            return DatasetReader.Load(file, limit);
        }
        if (subject is null || prompt is null || target is null)
            throw new CliUsageException("give --subject, --prompt and --target (or --requests FILE)");
        if (subject.Trim().Length == 0) throw new CliUsageException("--subject is empty");
        if (!prompt.Contains("{}", StringComparison.Ordinal))
        {
            // the prompt may be written with the subject in it: its first occurrence becomes {}
            int at = prompt.IndexOf(subject, StringComparison.Ordinal);
            if (at < 0) throw new CliUsageException($"--prompt \"{prompt}\" has no {{}} and does not contain the subject \"{subject}\"");
            prompt = prompt[..at] + "{}" + prompt[(at + subject.Length)..];
        }
        var req = new EditRequest { Subject = subject, Prompt = prompt, TargetNew = target };
        req.Validate("--prompt/--subject/--target");
        return [req];
    }

    private static RomeHparams Hparams(string? file, int? layer)
    {
        RomeHparams hp;
        if (file is not null)
        {
            if (!File.Exists(file)) throw new FileNotFoundException($"hparams file '{file}' not found", file);
            // Keys the file leaves out keep ROME's defaults: the file is laid over the default JSON
            // (the deserializer alone would leave them empty).
            var merged = System.Text.Json.Nodes.JsonNode.Parse(new RomeHparams().ToJson())!.AsObject();
            System.Text.Json.Nodes.JsonNode? given;
            try { given = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(file)); }
            catch (System.Text.Json.JsonException e) { throw new CliUsageException($"hparams file '{file}': malformed JSON ({e.Message.Split('\n')[0]})"); }
            if (given is not System.Text.Json.Nodes.JsonObject obj) throw new CliUsageException($"hparams file '{file}': expected a JSON object");
            foreach (var (k, v) in obj) merged[k] = v?.DeepClone();
            hp = RomeHparams.FromJson(merged.ToJsonString(), $"hparams file '{file}'");
        }
        else
        {
            if (layer is null) throw new CliUsageException("give --layer L (pick it with palimpsest trace) or --hparams FILE.json");
            hp = new RomeHparams();
        }
        if (layer is not null) hp = hp with { Layers = [layer.Value] };
        if (hp.Layers.Length != 1) throw new CliUsageException($"ROME edits one layer; the hparams give {hp.Layers.Length} (use --layer)");
        return hp;
    }
}
