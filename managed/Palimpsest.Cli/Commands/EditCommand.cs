using System.CommandLine;
using System.Globalization;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Journal;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest edit MODEL --method rome|memit|alphaedit --subject S --prompt "The mother tongue of {} is" --target English
/// [--layers L,...] [--hparams FILE.json] [--batch B] [--stats-corpus FILE|facts:PATH] --out DIR`, or `--requests FILE.json`
/// (applied one after another). The edited folder at --out is created from MODEL (or reopened when it
/// already is one, so edits accumulate); each delta is computed on its current weights and applied
/// through the journal, so it can be listed and reverted. Every path (--out, --dry-run, an adaptor
/// method) ends its output with the time by phase (<see cref="PhaseReport"/>).
/// </summary>
internal static class EditCommand
{
    /// <summary>Exit code with --require-success when an edit did not take.</summary>
    public const int NotTaken = 3;

    /// <summary>How long a write waits for a folder another process holds for a moment (a reader recovering, another apply).</summary>
    internal static readonly TimeSpan WaitForFolder = TimeSpan.FromSeconds(10);

    // the phases of the time report that have parts (the editor's own phases; the folder's steps)
    private const string EditPhase = "edit", ApplyPhase = "apply to folder", AnswersPhase = "check answers", BankPhase = "bank keys";
    private const string AfterApplyPart = "update editor memory";

    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var method = new Option<string>("--method") { Description = $"editing method: {Editors.Names} (lemoe: an adaptor beside one MLP, kept in DIR/lemoe.safetensors)", DefaultValueFactory = _ => Editors.Rome.Name };
        var subject = new Option<string?>("--subject") { Description = "the subject whose fact is rewritten, e.g. \"Danielle Darrieux\"" };
        var prompt = new Option<string?>("--prompt") { Description = "rewriting prompt with {} for the subject, e.g. \"The mother tongue of {} is\" (or with the subject written in)" };
        var target = new Option<string?>("--target") { Description = "the new object, e.g. English" };
        var requests = new Option<string?>("--requests") { Description = "JSON file of edit requests (CounterFact, ROME CounterFact or zsRE layout), applied in order" };
        var limit = new Option<int?>("--limit") { Description = "with --requests: apply only the first N" };
        var layer = new Option<string?>("--layers", "--layer") { Description = "MLP layer(s) to edit, e.g. --layer 2 (ROME) or --layers 1,2,3 (MEMIT, AlphaEdit); overrides the hparams file's" };
        var hparams = new Option<string?>("--hparams") { Description = "hyper-parameters JSON with the reference names (layers, v_num_grad_steps, v_lr, ...); missing keys keep the defaults" };
        var batch = new Option<int?>("--batch") { Description = "MEMIT/AlphaEdit: requests per edit (default: all in one); ROME edits one at a time" };
        var corpus = KeyStatsOptions.Corpus("--stats-corpus");
        var limitTokens = KeyStatsOptions.LimitTokens();
        var cache = KeyStatsOptions.Cache();
        var outDir = new Option<string?>("--out") { Description = "edited-model folder: created from MODEL, or reopened if it already holds a journal (not with --dry-run)" };
        var requireSuccess = new Option<bool>("--require-success") { Description = "exit 3 when an edit's rewriting prompt does not answer its target afterwards (the edit stays applied and journaled)" };
        var dryRun = new Option<bool>("--dry-run") { Description = "compute each edit on MODEL and forecast how far it moves the facts of --bank (||dW k|| at the edited layer), then apply nothing" };
        var bank = new Option<string?>("--bank") { Description = "--dry-run: the facts to protect (CounterFact or zsRE JSON); default MODEL/requests.json" };
        var bankLimit = new Option<int?>("--bank-limit") { Description = "--dry-run: the first N facts of the bank (default 500)" };
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var weights = CommonOptions.Weights();
        var cmd = new Command("edit", "rewrite facts in a model's weights (journaled and revertible), or forecast an edit's damage (--dry-run)")
            { model, method, subject, prompt, target, requests, limit, layer, hparams, batch, corpus, limitTokens, cache, outDir, requireSuccess, dryRun, bank, bankLimit, device, dtype, weights };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var times = new PhaseReport();
            var dev = DeviceChoice.Read(pr, device, dtype, weights);
            dev.Check();
            var reqs = Requests(pr.GetValue(subject), pr.GetValue(prompt), pr.GetValue(target), pr.GetValue(requests), pr.GetValue(limit));
            string source = pr.GetValue(model)!;
            bool dry = pr.GetValue(dryRun);
            if (dry && pr.GetValue(outDir) is not null) throw new CliUsageException("--dry-run applies nothing: leave out --out");
            if (!dry && (pr.GetValue(bank) is not null || pr.GetValue(bankLimit) is not null)) throw new CliUsageException("--bank and --bank-limit go with --dry-run");
            // one-line errors for a bad MODEL, method, layer or corpus before anything is created;
            // what is missing is named all at once
            var missing = new List<string>();
            if (!dry && pr.GetValue(outDir) is null) missing.Add("--out DIR (the edited-model folder), or --dry-run");
            string dir = dry ? "" : pr.GetValue(outDir) ?? "";
            var (found, corpusSpec) = EditMethod.Resolve(source, pr.GetValue(method)!, pr.GetValue(hparams), pr.GetValue(layer), pr.GetValue(corpus), io.Err, missing);
            EditMethod.ThrowIfMissing(missing);
            var em0 = found!;
            // every request must fit the context before anything is created (else the folder is made and the Nth edit fails)
            times.Time("check requests", () =>
            {
                using var ms = ModelSession.Open(source);
                for (int i = 0; i < reqs.Count; i++)
                {
                    var r = reqs[i];
                    int tokens = ms.Tokenizer.EncodePrompt(r.FilledPrompt + (r.TargetNew.StartsWith(' ') ? r.TargetNew : " " + r.TargetNew)).Length;
                    if (tokens > ms.Config.MaxPositions)
                        throw new CliUsageException($"{(pr.GetValue(requests) is { } f ? $"--requests {f}: request {i} ({r.Subject})" : "the request")}: prompt and target are {tokens} tokens, "
                            + $"longer than the model's context of {ms.Config.MaxPositions} ({ms.ContextField} in {ms.ConfigPath})");
                }
            });
            if (em0.Kind.Has(EditorCapabilities.Adaptor))
            {
                if (dry) throw new CliUsageException($"--dry-run: {em0.Name} changes no weight, so there is no ΔW to forecast");
                return AdaptorEdit(io, source, dir, reqs, em0, pr.GetValue(batch), dev, times);
            }
            int batchSize = pr.GetValue(batch) ?? (em0.Batched ? reqs.Count : 1);
            if (batchSize < 1) throw new CliUsageException($"--batch: must be a positive integer (got {batchSize})");
            if (!em0.Batched && batchSize != 1) throw new CliUsageException($"--batch: {em0.Name} edits one request at a time (batched methods: {string.Join(", ", Editors.All.Where(k => k.Has(EditorCapabilities.Batched)).Select(k => k.Name))})");
            if (dry)
                return DryRun(io, source, em0, reqs, batchSize, pr.GetValue(bank), pr.GetValue(bankLimit), corpusSpec, pr.GetValue(limitTokens), pr.GetValue(cache), dev, times);

            // The folder is held (its lock) only while a batch is applied: the deltas are computed
            // without it, on the weights of a known generation, so journal and revert are not refused
            // for the whole computation; a batch whose folder changed meanwhile is not applied.
            bool existed = EditedModel.IsEditedModel(dir);
            string emDir;
            using (var em = OpenOrCreate(io, times, source, dir, existed))
            {
                io.Out.WriteLine(existed ? $"editing {em.Dir} (generation {em.Generation})" : $"created {em.Dir} from {source}");
                emDir = em.Dir;
            }
            using var lm = times.Time("load model", () => LoadedModel.Open(emDir, dev));

            IEditor editor;
            try
            {
                editor = em0.Create(lm, corpusSpec, pr.GetValue(limitTokens), pr.GetValue(cache), io, anchorPool: reqs, times: times);
                Prepare(editor, lm, times); // its templates and C's factors now, before anything is applied
            }
            catch when (!existed)
            {
                // the editor could not be made (its statistics, its hparams on this model): a folder this
                // command created holds no edit yet, so it goes, as if the command had not run
                lm.Dispose();
                try { Directory.Delete(emDir, recursive: true); } catch (IOException) { /* the error matters more */ }
                throw;
            }
            long generation = times.Time("reopen from journal", () =>
            {
                using var em = EditedModel.Open(emDir, WaitForFolder);
                int remembered = em.Reopen(editor, lm.Tf); // AlphaEdit's C_p, UltraEdit's moments, from the journal
                if (remembered > 0 && em0.Kind.Has(EditorCapabilities.RemembersState))
                    io.Out.WriteLine($"{em0.Name}: continuing from the journal's {remembered} earlier edit(s) ({em.ActiveEdits(em0.Name).Sum(e => e.Requests.Count)} request(s))");
                return em.Generation;
            });
            editor.Phases = times.Inner(EditPhase);
            string layersText = string.Join(",", em0.Layers);
            var table = new TextTable(("edit", true), ("subject", false), ("target", false), ("layers", false), ("||dW||", true),
                ("loss", false), ("answer before", false), ("answer after", false));
            var probe = new Palimpsest.Evaluation.FactProbe(lm.Tf, lm.Tok);
            int notTaken = 0;
            string journalPath = Path.Combine(emDir, EditedModel.JournalFile);
            for (int start = 0; start < reqs.Count; start += batchSize)
            {
                var chunk = reqs.Skip(start).Take(batchSize).ToArray();
                var before = Answers(lm, chunk, times);
                var deltas = times.Time(EditPhase, () => editor.ComputeDeltas(lm.Tf, chunk));
                var (id, norm) = times.Time(ApplyPhase, () =>
                {
                    using var em = PhaseTimes.Time(times.Inner(ApplyPhase), "open journal", () => EditedModel.Open(emDir, WaitForFolder));
                    if (em.Generation != generation)
                    {
                        table.WriteTo(io.Out); // what was applied before it
                        throw new CliUsageException($"{emDir} changed while edit {start + 1} was computed (another process applied or reverted an edit: generation {generation} -> {em.Generation}); "
                            + "this batch was not applied (the ones before it were): run the command again for the rest");
                    }
                    em.Phases = times.Inner(ApplyPhase);
                    long editId = em.Apply(deltas, new EditRecord { Method = em0.Name, Requests = chunk, HyperParametersJson = em0.HparamsJson, EditorMemory = editor.LastMemoryContribution });
                    // the in-memory weights follow the checkpoint (rounded to its dtype), so the next
                    // batch is computed on exactly what a reload would give
                    PhaseTimes.Time(em.Phases, "update loaded model", () =>
                    {
                        foreach (int l in deltas.Select(d => d.Layer).Distinct()) lm.Model.SetDownProjection(l, em.ReadDownProjection(l).ToDouble());
                    });
                    generation = em.Generation;
                    return (editId, em.List().Single(e => e.Id == editId).DeltaNorm.ToString("0.0000", CultureInfo.InvariantCulture));
                });
                times.Time(EditPhase, AfterApplyPart, () => editor.AfterApply(lm.Tf, chunk));
                string loss = editor.LastOutcome;
                var after = Answers(lm, chunk, times);
                for (int i = 0; i < chunk.Length; i++)
                    table.Add(id.ToString(CultureInfo.InvariantCulture), chunk[i].Subject, chunk[i].TargetNew, layersText, norm, loss,
                        TokenText.Quote(before[i]), TokenText.Quote(after[i]));
                // an edit that did not take says so (and the journal keeps it), rather than an exit 0 with the old answer
                var missed = times.Time(AnswersPhase, () => chunk.Where(r => !probe.Answers(r)).ToList());
                if (missed.Count > 0)
                {
                    string what = times.Time(AnswersPhase, () => string.Join("; ", missed.Select(r => $"\"{r.FilledPrompt}\" answers {TokenText.Quote(lm.GreedyAnswer(r.FilledPrompt))}, not {TokenText.Quote(" " + r.TargetNew.TrimStart())}")));
                    string outcome = $"did not take for {missed.Count} of {chunk.Length} request(s): {what}";
                    times.Time(ApplyPhase, "record outcome", () =>
                    {
                        using var em = EditedModel.Open(emDir, WaitForFolder);
                        em.SetOutcome(id, outcome);
                    });
                    io.Err.WriteLine($"warning: edit {id} {outcome}. Try palimpsest trace to see where the model reads the fact, fact_token \"last\", or other --layers.");
                    notTaken += missed.Count;
                }
                if (!Console.IsErrorRedirected && reqs.Count > chunk.Length) io.Err.WriteLine($"edit: {id} applied ({start + chunk.Length}/{reqs.Count} requests)");
            }
            table.WriteTo(io.Out);
            io.Out.WriteLine($"journal: {journalPath} (generation {generation}); undo with: palimpsest revert {dir} EDIT_ID");
            times.WriteTo(io.Out);
            if (notTaken > 0 && pr.GetValue(requireSuccess))
            {
                io.Err.WriteLine($"palimpsest: {notTaken} of {reqs.Count} request(s) did not take (--require-success)");
                return NotTaken;
            }
            return CliErrors.Ok;
        }));
        return cmd;
    }

    /// <summary>
    /// --method lemoe: each batch trains one new expert of the folder's adaptor (created on the first
    /// LEMoE edit, loaded from DIR/lemoe.safetensors after that) and is journaled with it; the weights
    /// are untouched. Reverting the newest LEMoE edit removes its expert and restores the router.
    /// </summary>
    private static int AdaptorEdit(CliIo io, string source, string dir, IReadOnlyList<EditRequest> reqs, EditMethod method, int? batch, DeviceChoice dev, PhaseReport times)
    {
        var hp = (LemoeHparams)method.Settings.Hparams;
        int batchSize = batch ?? reqs.Count;
        if (batchSize < 1) throw new CliUsageException($"--batch: must be a positive integer (got {batchSize})");
        bool existed = EditedModel.IsEditedModel(dir);
        using var em = OpenOrCreate(io, times, source, dir, existed);
        io.Out.WriteLine(existed ? $"editing {em.Dir} (generation {em.Generation}, adaptor generation {em.AdaptorGeneration})" : $"created {em.Dir} from {source}");
        using var lm = times.Time("load model", () => LoadedModel.Open(em.Dir, dev));
        if (lm.Tf.Adaptor is LemoeAdaptor a && (a.Layer != hp.Layer || a.Rank != hp.ExpertRank || a.RouterHidden != hp.RouterHidden || a.KeyDim != hp.KeyDim))
            throw new CliUsageException($"{em.AdaptorPath}: the folder's LEMoE adaptor has layer {a.Layer}, expert_rank {a.Rank}, router_hidden {a.RouterHidden}, key_dim {a.KeyDim}; "
                + $"these hparams say {hp.Layer}, {hp.ExpertRank}, {hp.RouterHidden}, {hp.KeyDim} (give the same shapes)");
        var editor = method.Create(lm, _ => throw new InvalidOperationException($"{method.Name} reads no key statistics"));
        editor.Phases = times.Inner(EditPhase);
        em.Phases = times.Inner(ApplyPhase);
        var table = new TextTable(("edit", true), ("subject", false), ("target", false), ("layer", false), ("expert", true),
            ("nll", false), ("answer before", false), ("answer after", false));
        for (int start = 0; start < reqs.Count; start += batchSize)
        {
            var chunk = reqs.Skip(start).Take(batchSize).ToArray();
            var before = Answers(lm, chunk, times);
            times.Time(EditPhase, () => editor.ComputeDeltas(lm.Tf, chunk));
            times.Time(EditPhase, AfterApplyPart, () => editor.AfterApply(lm.Tf, chunk));
            var adaptor = Lemoe.AdaptorOf(lm.Tf, hp);
            long id = times.Time(ApplyPhase, () => em.ApplyAdaptor(adaptor, hp, new EditRecord { Method = method.Name, Requests = chunk, HyperParametersJson = method.HparamsJson }));
            string nll = editor.LastOutcome;
            var after = Answers(lm, chunk, times);
            for (int i = 0; i < chunk.Length; i++)
                table.Add(id.ToString(CultureInfo.InvariantCulture), chunk[i].Subject, chunk[i].TargetNew, hp.Layer.ToString(CultureInfo.InvariantCulture),
                    adaptor.Experts.Count.ToString(CultureInfo.InvariantCulture), nll, TokenText.Quote(before[i]), TokenText.Quote(after[i]));
            if (!Console.IsErrorRedirected && reqs.Count > chunk.Length) io.Err.WriteLine($"edit: {id} applied ({start + chunk.Length}/{reqs.Count} requests)");
        }
        table.WriteTo(io.Out);
        io.Out.WriteLine($"journal: {em.JournalPath}; adaptor: {em.AdaptorPath} (adaptor generation {em.AdaptorGeneration}); undo the newest with: palimpsest revert {dir} EDIT_ID");
        times.WriteTo(io.Out);
        return CliErrors.Ok;
    }

    /// <summary>
    /// --dry-run: each batch's deltas computed on MODEL (never applied, so every forecast is against
    /// the unedited model), and for each request and edited layer the interference monitor's
    /// forecast over the bank (the bank's entries with the request's own subject and prompt left out).
    /// </summary>
    private static int DryRun(CliIo io, string source, EditMethod em0, IReadOnlyList<EditRequest> reqs, int batchSize,
        string? bankFile, int? bankLimit, string? corpus, long? limitTokens, string? cache, DeviceChoice dev, PhaseReport times)
    {
        if (bankLimit is <= 0) throw new CliUsageException($"--bank-limit: must be a positive integer (got {bankLimit})");
        string bankPath = bankFile ?? Path.Combine(source, "requests.json");
        if (!File.Exists(bankPath)) throw new FileNotFoundException($"--bank: file '{bankPath}' not found (give --bank FILE.json)", bankPath);
        using var lm = times.Time("load model", () => LoadedModel.Open(source, dev));
        // a norm-anchored editor measures its anchor on the command's requests, as --out does
        var editor = em0.Create(lm, corpus, limitTokens, cache, io, anchorPool: reqs, times: times);
        Prepare(editor, lm, times);
        editor.Phases = times.Inner(EditPhase);
        var probes = new FactProbes(lm.Tok, em0.FactToken);
        var bankFacts = times.Time(BankPhase, () => DatasetReader.Load(bankPath, bankLimit ?? 500));
        var banks = new Dictionary<int, IReadOnlyList<Palimpsest.Analysis.BankKey>>();
        io.Out.WriteLine($"dry run: {reqs.Count} request(s) with {em0.Name} at layers [{string.Join(",", em0.Layers)}] (fact token {em0.FactToken}); bank: {bankFacts.Count} facts of {bankPath}; nothing is applied");
        var table = new TextTable(("request", true), ("subject", false), ("target", false), ("layer", true), ("own", true),
            ("max drift", true), ("max/own", true), ("mean drift", true), ("most at risk", false));
        static string F(double x) => x.ToString("0.0000", CultureInfo.InvariantCulture);
        for (int start = 0; start < reqs.Count; start += batchSize)
        {
            var chunk = reqs.Skip(start).Take(batchSize).ToArray();
            var deltas = times.Time(EditPhase, () => editor.ComputeDeltas(lm.Tf, chunk));
            for (int i = 0; i < chunk.Length; i++)
                foreach (var delta in deltas)
                {
                    if (!banks.TryGetValue(delta.Layer, out var all))
                        banks[delta.Layer] = all = times.Time(BankPhase, () => Palimpsest.Analysis.InterferenceMonitor.Bank(lm.Tf, probes, bankFacts, delta.Layer));
                    string self = $"{chunk[i].Subject}: {chunk[i].Prompt}";
                    var others = all.Where(b => b.Name != self).ToArray();
                    var req = chunk[i];
                    var f = times.Time("forecast", () => Palimpsest.Analysis.InterferenceMonitor.Forecast(delta, probes.KeyAt(lm.Tf, req.Prompt, req.Subject, delta.Layer), others, top: 3));
                    table.Add((start + i + 1).ToString(CultureInfo.InvariantCulture), chunk[i].Subject, chunk[i].TargetNew,
                        delta.Layer.ToString(CultureInfo.InvariantCulture), F(f.OwnChange), F(f.MaxDrift), F(f.MaxRelative), F(f.MeanDrift),
                        string.Join("; ", f.MostAtRisk.Select(r => $"{r.Name} ({F(r.Drift)})")));
                }
        }
        table.WriteTo(io.Out);
        io.Out.WriteLine("own: ||dW k|| for the edited fact's key (how far its MLP output at that layer moves); drift: the same for each bank fact's key; max/own near 1: another fact moves as much as the edited one");
        times.WriteTo(io.Out);
        return CliErrors.Ok;
    }

    // the edited-model folder at dir: reopened when it is one (saying what Open had to recover), else created from source
    private static EditedModel OpenOrCreate(CliIo io, PhaseReport times, string source, string dir, bool existed)
    {
        var em = times.Time(existed ? "open folder" : "create folder", () => existed ? EditedModel.Open(dir) : EditedModel.Create(source, dir));
        if (em.Recovery is not null) io.Out.WriteLine($"recovered {dir}: {em.Recovery}");
        return em;
    }

    // an editor's one-time preparation (context templates, C's factors), timed apart from its edits
    private static void Prepare(IEditor editor, LoadedModel lm, PhaseReport times)
    {
        if (editor is IPreparedEditor prepared) times.Time("prepare editor", () => prepared.Prepare(lm.Tf));
    }

    // the greedy answers of the batch's rewriting prompts (before or after its edit)
    private static string[] Answers(LoadedModel lm, IReadOnlyList<EditRequest> chunk, PhaseReport times) =>
        times.Time(AnswersPhase, () => chunk.Select(r => lm.GreedyAnswer(r.FilledPrompt)).ToArray());

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
}
