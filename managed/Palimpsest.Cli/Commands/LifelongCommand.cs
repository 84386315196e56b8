using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Evaluation;
using Palimpsest.Models;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest lifelong MODEL --method rome|memit|alphaedit|wilke|lemoe --dataset FILE --edits N [--batch B]
/// [--held-out K] [--layers ...] [--hparams FILE] [--stats-corpus ...] [--monitor [--refuse-above X]] --report DIR`:
/// applies records 0..N−1 in batches without ever restoring (in memory; the model folder is not
/// changed) and reports ES / GS / LS / ERS / ORS / S and the per-layer drift at 1, 2, 4, ... edits;
/// the held-out facts are records N..N+K−1 with their true objects. Writes DIR/lifelong.json and
/// DIR/lifelong.md at every checkpoint (marked partial until the last), one stderr line each.
/// A stream without the monitor (any method: the weights, AlphaEdit's C_p, LEMoE's adaptor) also saves its state in DIR/state (at
/// checkpoints, every --save-minutes and every --save-every edits; removed when the run ends): --resume goes on from it
/// and reaches the uninterrupted run's numbers bit for bit, --stop-after N stops there on purpose.
/// </summary>
internal static class LifelongCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var method = new Option<string>("--method") { Description = $"editing method: {Editors.Names}", DefaultValueFactory = _ => Editors.Rome.Name };
        var dataset = new Option<string?>("--dataset") { Description = "CounterFact / zsRE file: the stream is its first --edits records (default MODEL/requests.json)" };
        var edits = new Option<string>("--edits") { Description = "number of edits in the stream, or all: every record read (see --records, --known-only) but the last --held-out", Required = true };
        var records = new Option<int?>("--records") { Description = "read only the dataset's first N records (e.g. 5000: the facts the shared models were trained on)" };
        var knownOnly = new Option<bool>("--known-only") { Description = "keep only the records whose true object the unedited model answers (greedy, every token), for the stream and the held-out facts alike" };
        var batch = new Option<int?>("--batch") { Description = "requests per edit (ROME, WilKE: 1)" };
        var heldOut = new Option<int>("--held-out") { Description = "held-out facts (the records after the stream) for ORS", DefaultValueFactory = _ => 50 };
        var layer = new Option<string?>("--layers", "--layer") { Description = "MLP layer(s) to edit; overrides the hparams file's" };
        var hparams = new Option<string?>("--hparams") { Description = "hyper-parameters JSON with the reference names; missing keys keep the defaults" };
        var corpus = KeyStatsOptions.Corpus("--stats-corpus");
        var limitTokens = KeyStatsOptions.LimitTokens();
        var cache = KeyStatsOptions.Cache();
        var report = new Option<string?>("--report") { Description = "folder for lifelong.json and lifelong.md" };
        var monitor = new Option<bool>("--monitor") { Description = "forecast each batch's damage before applying it (the interference monitor over the held-out facts and the edits so far); writes monitor.md" };
        var refuseAbove = new Option<double?>("--refuse-above") { Description = "with the monitor: refuse (skip) a batch whose largest forecast drift exceeds this fraction of the edit's own change" };
        var moveTo = new Option<string?>("--move-to") { Description = "with --refuse-above and ROME: a batch over the threshold is moved to the one of these layers where its forecast is smallest (and under it) instead of refused" };
        var resume = new Option<bool>("--resume") { Description = "go on from the state a stopped run saved in DIR/state (same model, dataset and options); not with the monitor" };
        var saveEvery = new Option<int>("--save-every") { Description = "save the run's state (DIR/state: the edited weights and scores so far) every N edits too (it is saved at each checkpoint and every --save-minutes)", DefaultValueFactory = _ => 0 };
        var saveMinutes = new Option<double>("--save-minutes") { Description = "save the run's state when this many minutes have passed since the last save (0: not by time)", DefaultValueFactory = _ => 5 };
        var stopAfter = new Option<int?>("--stop-after") { Description = "stop once N edits are done, saving the state (continue with --resume): a long stream in slices" };
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var cmd = new Command("lifelong", "a stream of edits never restored: ES/GS/LS/ERS/ORS/S at 1, 2, 4, ... edits")
            { model, method, dataset, edits, records, knownOnly, batch, heldOut, layer, hparams, corpus, limitTokens, cache, report, monitor, refuseAbove, moveTo, resume, saveEvery, saveMinutes, stopAfter, device, dtype };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var dev = DeviceChoice.Read(pr, device, dtype);
            dev.Check();
            string editsText = pr.GetValue(edits)!;
            bool everyRecord = editsText.Equals("all", StringComparison.OrdinalIgnoreCase);
            int n = everyRecord ? 0 : int.TryParse(editsText, NumberStyles.None, CultureInfo.InvariantCulture, out int parsed) && parsed > 0 ? parsed
                : throw new CliUsageException($"--edits: '{editsText}' is neither a positive number of edits nor all");
            int k = pr.GetValue(heldOut);
            if (k < 0) throw new CliUsageException($"--held-out: must be >= 0 (got {k})");
            int? first = pr.GetValue(records);
            if (first is < 1) throw new CliUsageException($"--records: must be a positive integer (got {first})");
            bool known = pr.GetValue(knownOnly);
            // what is missing is named all at once, before the dataset or the weights are read
            string folder = pr.GetValue(model)!;
            var missing = new List<string>();
            string reportDir = pr.GetValue(report) ?? "";
            if (pr.GetValue(report) is null) missing.Add("--report DIR (the folder for lifelong.json and lifelong.md)");
            string datasetPath = pr.GetValue(dataset) ?? Path.Combine(folder, "requests.json");
            if (pr.GetValue(dataset) is { } given && !File.Exists(given)) throw new FileNotFoundException($"--dataset: file '{given}' not found", given);
            if (pr.GetValue(dataset) is null)
            {
                if (File.Exists(datasetPath)) io.Err.WriteLine($"lifelong: the stream is the model folder's {datasetPath} (give --dataset for another)");
                else missing.Add($"--dataset FILE (CounterFact or zsRE requests; {folder} has no requests.json)");
            }
            var (found, corpusSpec) = EditMethod.Resolve(folder, pr.GetValue(method)!, pr.GetValue(hparams), pr.GetValue(layer), pr.GetValue(corpus), io.Err, missing);
            EditMethod.ThrowIfMissing(missing);
            var em = found!;
            // with --known-only or --edits all the whole range is read (the known ones are found after loading the model)
            var all = DatasetReader.Load(datasetPath, known || everyRecord ? first : Math.Min(n + k, first ?? int.MaxValue)).ToList();
            using var lm = LoadedModel.Open(folder, dev);
            if (known)
            {
                var probe = new FactProbe(lm.Tf, lm.Tok);
                int read = all.Count;
                var candidates = all;
                all = CliProgress.Run(io, $"which of {read} facts the model knows", lines =>
                    candidates.Where((r, i) => { lines.Report(i / (double)read); return r.TargetTrue is not null && probe.Answers(r, r.TargetTrue); }).ToList());
                io.Err.WriteLine($"lifelong: --known-only: the model answers {all.Count} of {read} records' true objects");
            }
            if (everyRecord) n = all.Count - k;
            if (n < 1 || all.Count < n)
                throw new CliUsageException($"--edits {editsText}: the dataset has only {all.Count} {(known ? "known " : "")}records{(first is null ? "" : $" among its first {first}")}{(everyRecord ? $", and --held-out takes {k}" : "")}");
            var stream = all.Take(n).ToList();
            var held = all.Skip(n).Take(k).Where(r => r.TargetTrue is not null).ToList();
            double? limit = pr.GetValue(refuseAbove);
            if (limit is <= 0 || limit is double.NaN) throw new CliUsageException($"--refuse-above: must be a positive number (got {limit})");
            bool watch = pr.GetValue(monitor) || limit is not null;
            int every = pr.GetValue(saveEvery);
            if (every < 0) throw new CliUsageException($"--save-every: must be >= 0 (got {every})");
            double minutes = pr.GetValue(saveMinutes);
            if (!(minutes >= 0)) throw new CliUsageException($"--save-minutes: must be >= 0 (got {minutes})");
            int? stopAt = pr.GetValue(stopAfter);
            if (stopAt is < 1) throw new CliUsageException($"--stop-after: must be a positive number of edits (got {stopAt})");
            string stateDir = Path.Combine(reportDir, "state");
            var output = new Report(reportDir, Path.GetFileName(Path.GetFullPath(lm.Folder)), Path.GetFullPath(lm.Folder),
                Path.GetFullPath(datasetPath), n, held.Count, watch, limit);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            // a long stream (WilKE's 1,000 edits take hours on a CPU) saves its report at every
            // checkpoint, marked partial, and says on stderr how far it got
            IAnchoredEditor? anchored = null;
            void Reached(IProgressLines lines, IReadOnlyList<LifelongCheckpoint> cps, IReadOnlyList<MonitorEntry> log)
            {
                var c = cps[^1];
                // Norm-Anchor Scaling: the anchor the run uses, and how many requests it skipped so far
                if (anchored is { NormAnchored: true, AnchorDescription: { } anchor }) lines.Line($"lifelong: norm anchor {anchor}");
                lines.Line(string.Create(CultureInfo.InvariantCulture,
                    $"lifelong: {c.Edits} of {n} edits, S {F(c.S)} (ES {F(c.ES)}, ERS {F(c.ERS)}, ORS {F(c.ORS)}), {clock.Elapsed.TotalMinutes:0.0} min"));
                if (c.Edits < n) output.Write(cps, log, complete: false);
            }
            // the run's state, saved as it goes (and read back with --resume), so that a stream
            // longer than a session can span several processes
            int savedAt = 0;
            LifelongPersistence Persistence(string method, int b, string hparamsJson, int f, bool stats)
            {
                // the key statistics (corpus and token limit) shape C, so a resume must use the same
                string? statsSpec = stats ? $"{corpusSpec} (tokens: {pr.GetValue(limitTokens)?.ToString(CultureInfo.InvariantCulture) ?? "all"})" : null;
                string run = RunDescription(method, lm.Folder, datasetPath, n, b, held.Count, hparamsJson, statsSpec, first, known);
                LifelongState? from = null;
                if (pr.GetValue(resume))
                {
                    from = LifelongStateFile.Load(stateDir);
                    CheckSameRun(from.Run, run, Path.Combine(stateDir, "state.json"));
                    io.Err.WriteLine($"lifelong: resuming at {from.Edits} of {n} edits from {stateDir}");
                    savedAt = from.Edits;
                }
                return new LifelongPersistence(run, from, s => { LifelongStateFile.Save(stateDir, s, f); savedAt = s.Edits; }, every, stopAt,
                    minutes > 0 ? TimeSpan.FromMinutes(minutes) : null);
            }
            // stopped on request (--stop-after): the report stays partial, the state waits for --resume
            bool Stopped(IReadOnlyList<LifelongCheckpoint> cps, IReadOnlyList<MonitorEntry> log)
            {
                if (stopAt is null || (cps.Count > 0 && cps[^1].Edits == n)) return false;
                output.Write(cps, log, complete: false);
                io.Out.WriteLine($"stopped after {savedAt} of {n} edits as asked (--stop-after {stopAt}); the state is in {stateDir}: go on with --resume");
                return true;
            }
            IReadOnlyList<LifelongCheckpoint> checkpoints;
            IReadOnlyList<MonitorEntry> monitorLog = [];
            int b = pr.GetValue(batch) ?? (em.Batched ? Math.Min(100, n) : 1);
            if (b < 1) throw new CliUsageException($"--batch: must be a positive integer (got {b})");
            if (!em.Batched && b != 1) throw new CliUsageException($"--batch: {em.Name} edits one request at a time");
            if (em.Kind.Has(EditorCapabilities.Adaptor))
            {
                // an adaptor beside one MLP: no key statistics, no weight change, batches planned by the method
                if (watch) throw new CliUsageException($"--monitor / --refuse-above: {em.Name} changes no weight, so there is no ΔW to forecast");
                var editor = em.Create(lm, corpusSpec, pr.GetValue(limitTokens), pr.GetValue(cache), io);
                var hp = (LemoeHparams)em.Settings.Hparams;
                var adaptor = Lemoe.AdaptorOf(lm.Tf, hp);
                var batches = hp.PlanOrder
                    ? LemoePlanner.Plan(stream, b, r => adaptor.RoutingInputs([], lm.Tok.EncodePrompt(r.FilledPrompt), null)[^1], hp.Seed)
                    : stream.Chunk(b).Select(c => (IReadOnlyList<EditRequest>)c).ToList();
                stream = batches.SelectMany(x => x).ToList();
                output.Describe(em.Name, b, em.HparamsJson, em.Layers, adaptor: true);
                var persist = Persistence(em.Name, b, em.HparamsJson, lm.Config.DFf, stats: false);
                checkpoints = CliProgress.Run(io, $"lifelong {em.Name}, {n} edits", lines =>
                    new LifelongHarness(lm.Tf, lm.Tok).RunPlanned(editor, batches, held, lines, cps => Reached(lines, cps, []), persist));
                if (Stopped(checkpoints, [])) return CliErrors.Ok;
            }
            else
            {
                int[]? moveLayers = pr.GetValue(moveTo) is { } mt ? EditingErrors.ParseLayers(mt, lm.Config.Layers, "--move-to") : null;
                if (moveLayers is not null && limit is null) throw new CliUsageException("--move-to: give --refuse-above too (the forecast threshold above which a batch is moved)");
                if (moveLayers is not null && !em.Kind.Has(EditorCapabilities.EditsAtGivenLayer))
                    throw new CliUsageException($"--move-to: {em.Name} cannot make its edit at another layer (methods that can: {string.Join(", ", Editors.All.Where(k => k.Has(EditorCapabilities.EditsAtGivenLayer)).Select(k => k.Name))})");
                var editor = em.Create(lm, corpusSpec, pr.GetValue(limitTokens), pr.GetValue(cache), io, moveLayers, anchorPool: all);
                anchored = editor as IAnchoredEditor;
                var guard = watch ? new LifelongMonitor(held, new FactProbes(lm.Tok, em.FactToken), limit, moveLayers) : null;
                var harness = new LifelongHarness(lm.Tf, lm.Tok);
                output.Describe(em.Name, b, em.HparamsJson, em.Layers);
                // The run's state is saved as it goes where it can be resumed: the monitor's bank
                // of keys (read from the model as it was when each was added) is not part of it.
                bool resumable = guard is null;
                if ((pr.GetValue(resume) || stopAt is not null) && !resumable)
                    throw new CliUsageException("--resume / --stop-after: a run with the interference monitor cannot be resumed (its bank of keys is not saved)");
                var persist = resumable ? Persistence(em.Name, b, em.HparamsJson, lm.Config.DFf, em.NeedsStats) : null;
                checkpoints = CliProgress.Run(io, $"lifelong {em.Name}, {n} edits", lines =>
                    harness.Run(editor, stream, b, held, lines, guard, cps => Reached(lines, cps, harness.MonitorLog), persist));
                monitorLog = harness.MonitorLog;
                if (Stopped(checkpoints, monitorLog)) return CliErrors.Ok;
            }
            LifelongStateFile.Delete(stateDir);
            var md = output.Write(checkpoints, monitorLog, complete: true);
            foreach (var line in md.Skip(4)) io.Out.WriteLine(line);
            io.Out.WriteLine($"wrote {Path.Combine(reportDir, "lifelong.md")} and lifelong.json");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    // what a resumed run must share with the saved one
    private static string RunDescription(string method, string model, string dataset, int edits, int batch, int heldOut, string hparams, string? stats,
        int? records, bool knownOnly)
    {
        var run = new JsonObject
        {
            ["method"] = method, ["model"] = Path.GetFullPath(model), ["dataset"] = Path.GetFullPath(dataset), ["edits"] = edits, ["batch"] = batch,
            ["held_out"] = heldOut, ["hparams"] = JsonNode.Parse(hparams), ["stats_corpus"] = stats,
        };
        // written only when given, so that states saved before these options existed still resume
        if (records is not null) run["records"] = records;
        if (knownOnly) run["known_only"] = true;
        return run.ToJsonString();
    }

    // one line naming the first option where this run and the saved one differ
    private static void CheckSameRun(string saved, string here, string path)
    {
        var a = JsonNode.Parse(saved)!.AsObject(); var h = JsonNode.Parse(here)!.AsObject();
        foreach (var (key, value) in h)
        {
            string mine = value?.ToJsonString() ?? "null", theirs = a[key]?.ToJsonString() ?? "null";
            if (mine != theirs)
                throw new CliUsageException($"--resume: the saved run ({path}) has {key} {Short(theirs)}, this one {Short(mine)}; resume with the same model, dataset and options");
        }
        static string Short(string s) => s.Length > 120 ? s[..117] + "..." : s;
    }

    private static string F(double x) => double.IsNaN(x) ? "-" : x.ToString("0.000", CultureInfo.InvariantCulture);

    /// <summary>
    /// The run's report: DIR/lifelong.md and lifelong.json (and monitor.md with the monitor), each
    /// replaced atomically, so a run stopped part-way leaves its last checkpoint's report, marked
    /// partial, and never a half-written file.
    /// </summary>
    private sealed class Report(string dir, string modelName, string modelPath, string datasetPath, int edits, int heldOut, bool watch, double? limit)
    {
        private string _name = "", _hparams = "{}";
        private int _batch;
        private int[] _layers = [];
        private bool _adaptor;

        public void Describe(string name, int batch, string hparamsJson, int[] layers, bool adaptor = false) =>
            (_name, _batch, _hparams, _layers, _adaptor) = (name, batch, hparamsJson, layers, adaptor);

        /// <returns>the lines of lifelong.md</returns>
        public List<string> Write(IReadOnlyList<LifelongCheckpoint> checkpoints, IReadOnlyList<MonitorEntry> monitorLog, bool complete)
        {
            Directory.CreateDirectory(dir);
            int reached = checkpoints.Count == 0 ? 0 : checkpoints[^1].Edits;
            var md = new List<string>
            {
                $"# Lifelong editing: {_name} on {modelName}",
                "",
                $"{edits} edits from {Path.GetFileName(datasetPath)} in batches of {_batch}, never restored; {heldOut} held-out facts; layers [{string.Join(", ", _layers)}]{(_adaptor ? " (the adaptor's; batches planned by K-means when plan_order)" : "")}."
                    + (complete ? "" : $" **Partial: the run had reached {reached} of {edits} edits when this was written.**"),
                "",
                "| edits | ES | GS | LS | ERS | ORS | S | ‖ΔW‖ per layer |",
                "|---:|---:|---:|---:|---:|---:|---:|---|",
            };
            foreach (var c in checkpoints)
                md.Add($"| {c.Edits} | {F(c.ES)} | {F(c.GS)} | {F(c.LS)} | {F(c.ERS)} | {F(c.ORS)} | {F(c.S)} | {string.Join(" ", c.DeltaNorms.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}:{F(kv.Value)}"))} |");
            if (watch)
            {
                int refused = monitorLog.Where(e => e.Refused).Select(e => e.Batch).Distinct().Count();
                int moved = monitorLog.Where(e => e.MovedTo is not null).Select(e => e.Batch).Distinct().Count();
                md.Add("");
                md.Add($"Interference monitor over {heldOut} held-out facts and the edits so far: {monitorLog.Count} forecasts, "
                    + (limit is null ? "nothing refused (no --refuse-above)." : $"{refused} batch(es) refused{(moved > 0 ? $" and {moved} moved to another layer" : "")} above a max drift of {F(limit.Value)} × the edit's own change (monitor.md)."));
                var mon = new List<string>
                {
                    $"# Interference monitor: {_name} on {modelName}", "",
                    "| batch | subject | target | layer | own ‖ΔW k_e‖ | max drift | max / own | most at risk | action |",
                    "|---:|---|---|---:|---:|---:|---:|---|---|",
                };
                mon.AddRange(monitorLog.Select(e => $"| {e.Batch} | {e.Subject} | {e.Target} | {e.Layer} | {F(e.OwnChange)} | {F(e.MaxDrift)} | {F(e.MaxRelative)} | {e.MostAtRisk} | {(e.Refused ? "refused" : e.MovedTo is { } to ? $"moved to layer {to}" : "")} |"));
                AtomicFile.WriteAllText(Path.Combine(dir, "monitor.md"), string.Join('\n', mon) + "\n");
            }
            AtomicFile.WriteAllText(Path.Combine(dir, "lifelong.md"), string.Join('\n', md) + "\n");
            var json = new JsonObject
            {
                ["method"] = _name, ["model"] = modelPath, ["dataset"] = datasetPath,
                ["edits"] = edits, ["complete"] = complete, ["batch"] = _batch, ["held_out"] = heldOut, ["hparams"] = JsonNode.Parse(_hparams),
                ["checkpoints"] = new JsonArray(checkpoints.Select(c => (JsonNode)c.ToJson()).ToArray()),
            };
            if (watch)
                json["monitor"] = new JsonArray(monitorLog.Select(e => (JsonNode)new JsonObject
                {
                    ["batch"] = e.Batch, ["subject"] = e.Subject, ["target"] = e.Target, ["layer"] = e.Layer, ["own"] = e.OwnChange,
                    ["max_drift"] = e.MaxDrift, ["max_relative"] = e.MaxRelative, ["most_at_risk"] = e.MostAtRisk, ["refused"] = e.Refused, ["moved_to"] = e.MovedTo,
                }).ToArray());
            AtomicFile.WriteAllText(Path.Combine(dir, "lifelong.json"), json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
            return md;
        }
    }
}
