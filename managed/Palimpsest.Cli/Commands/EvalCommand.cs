using System.CommandLine;
using System.Globalization;
using Palimpsest.Editing.Data;
using Palimpsest.Editing;
using Palimpsest.Evaluation;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest eval MODEL --dataset FILE [--limit N]`: the model's CounterFact scores (efficacy,
/// paraphrase, neighbourhood: success, magnitude, top-1; score S) or zsRE token accuracies, as
/// ROME's evaluation code computes them, for the model as it is (edited or not). With --method
/// (rome, memit, alphaedit) each record is first edited into the unedited model, scored, and the
/// edit undone (the single-edit protocol of ROME's and MEMIT's papers); --known-only skips records
/// whose true object the model does not answer before any edit. --fluency adds the papers' fluency
/// metric, generation entropy (<see cref="Fluency"/>), from each record's generation prompts.
/// </summary>
internal static class EvalCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var dataset = new Option<string>("--dataset") { Description = "CounterFact (EasyEdit or ROME layout) or zsRE file", Required = true };
        var limit = new Option<int?>("--limit") { Description = "evaluate only the first N records" };
        var method = new Option<string?>("--method") { Description = "edit each record (from the unedited model) with rome, memit, alphaedit or wilke before scoring it" };
        var layer = new Option<string?>("--layers", "--layer") { Description = "with --method: MLP layer(s) to edit; overrides the hparams file's" };
        var hparams = new Option<string?>("--hparams") { Description = "with --method: hyper-parameters JSON with the reference names" };
        var known = new Option<bool>("--known-only") { Description = "score only records whose true object the unedited model answers (greedy, every token)" };
        var fluency = new Option<bool>("--fluency") { Description = "CounterFact: also report generation entropy, the fluency metric of ROME and MEMIT (n-gram entropy of text sampled from each record's generation prompts, top-k 5, 100 tokens); slow" };
        var corpus = KeyStatsOptions.Corpus("--stats-corpus");
        var cache = KeyStatsOptions.Cache();
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var cmd = new Command("eval", "CounterFact / zsRE scores of a model, or of single edits of it") { model, dataset, limit, method, layer, hparams, known, fluency, corpus, cache, device, dtype };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var dev = DeviceChoice.Read(pr, device, dtype);
            dev.Check();
            int? n = pr.GetValue(limit);
            if (n is <= 0) throw new CliUsageException($"--limit: must be a positive integer (got {n})");
            string file = pr.GetValue(dataset)!;
            // --known-only may top up past --limit: then read the file once, whole
            bool knownOnly = pr.GetValue(known);
            var all = DatasetReader.LoadRecords(file, knownOnly ? null : n);
            var records = n is int first ? all.Take(first).ToList() : all;
            var format = records[0].Format;
            if (format == DatasetFormat.KnownFacts)
                throw new CliUsageException($"{Path.GetFileName(file)}: known-facts records have no counterfactual target to score; use a CounterFact or zsRE file");
            bool withFluency = pr.GetValue(fluency);
            if (withFluency && !all.Any(r => r.GenerationPrompts.Count > 0))
                throw new CliUsageException($"--fluency: {Path.GetFileName(file)} has no generation prompts (ROME's CounterFact layout has them)");
            var generationPrompts = new Dictionary<EditRequest, IReadOnlyList<string>>(ReferenceEqualityComparer.Instance);
            foreach (var r in all) generationPrompts[r.Request] = r.GenerationPrompts;
            using var lm = LoadedModel.Open(pr.GetValue(model)!, dev);
            var requests = records.Select(r => r.Request).ToArray();
            if (knownOnly)
            {
                var probe = new FactProbe(lm.Tf, lm.Tok);
                int before = requests.Length;
                requests = requests.Where(r => r.TargetTrue is not null && probe.Answers(r, r.TargetTrue)).ToArray();
                io.Out.WriteLine($"--known-only: the model answers {requests.Length} of {before} records' true objects");
                if (n is int lim && format != DatasetFormat.Zsre && requests.Length < lim)
                {
                    // top up to --limit known records from further down the file
                    var more = all.Skip(before).Select(r => r.Request)
                        .Where(r => r.TargetTrue is not null && probe.Answers(r, r.TargetTrue)).Take(lim - requests.Length);
                    requests = [.. requests, .. more];
                    io.Out.WriteLine($"--known-only: topped up to {requests.Length} known records");
                }
            }
            Func<EditRequest, IDisposable>? editEach = null;
            Action? onDone = null;
            if (pr.GetValue(method) is { } m)
            {
                int[]? layers = pr.GetValue(layer) is { } lt ? EditingErrors.ParseLayers(lt, lm.Config.Layers, "--layers") : null;
                var missing = new List<string>();
                var found = EditMethod.ParseOrDefault(m, pr.GetValue(hparams), layers, lm.Folder, io.Err, missing);
                string? corpusSpec = EditMethod.CorpusOrDefault(pr.GetValue(corpus), found?.NeedsStats ?? true, lm.Folder, io.Err, missing);
                EditMethod.ThrowIfMissing(missing);
                var em = found!;
                var editor = em.Create(lm, corpusSpec, null, pr.GetValue(cache), io, anchorPool: requests);
                var clock = new System.Diagnostics.Stopwatch();
                int edits = 0;
                editEach = r =>
                {
                    clock.Start();
                    var deltas = editor.ComputeDeltas(lm.Tf, [r]);
                    clock.Stop(); edits++;
                    var saved = deltas.Select(d => (d.Layer, Old: lm.Model.ApplyDelta(d))).ToList();
                    return new Undo(() => { foreach (var (l, old) in Enumerable.Reverse(saved)) lm.Model.SetDownProjection(l, old); });
                };
                io.Out.WriteLine($"editing each record with {em.Name} at layers [{string.Join(", ", em.Layers)}], scoring it, and undoing the edit");
                onDone = () => io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{edits} edits, {clock.Elapsed.TotalMilliseconds / Math.Max(1, edits):0} ms per edit (computing the delta)"));
            }
            io.Out.WriteLine($"{Path.GetFileName(file)}: {requests.Length} record(s), {format}");
            // each record scored (inside its edit, undone after, with --method), a bar on a terminal
            List<T> EvaluateAll<T>(Func<EditRequest, T> evaluate) => CliProgress.Run(io, $"eval, {requests.Length} records", p =>
            {
                var done = new List<T>();
                foreach (var r in requests)
                {
                    using (editEach?.Invoke(r)) done.Add(evaluate(r));
                    p.Report(done.Count / (double)requests.Length);
                }
                return done;
            });
            if (format == DatasetFormat.Zsre)
            {
                var ev = new ZsreEvaluator(lm.Tf, lm.Tok);
                var cases = EvaluateAll(ev.Evaluate);
                var s = ZsreEvaluator.Summarize(cases);
                var t = new TextTable(("metric", false), ("token accuracy", true));
                t.Add("efficacy", F(s.Efficacy));
                t.Add("generalization", F(s.Generalization));
                t.Add("specificity", F(s.Specificity));
                t.WriteTo(io.Out);
            }
            else
            {
                var ev = new CounterFactEvaluator(lm.Tf, lm.Tok);
                // generation entropy (NaN without prompts) of the model as scored: inside the record's edit
                var cases = EvaluateAll(r => (Case: ev.Evaluate(r),
                    Entropy: withFluency ? Fluency.GenerationEntropy(lm.Tf, lm.Tok, generationPrompts[r]) : double.NaN));
                var s = CounterFactEvaluator.Summarize(cases.Select(c => c.Case).ToList());
                var t = new TextTable(("prompts", false), ("success", true), ("magnitude", true), ("top-1", true));
                t.Add("efficacy (rewrite)", F(s.EfficacySuccess), F(s.EfficacyMagnitude), F(s.EfficacyTop1));
                t.Add("paraphrase", F(s.ParaphraseSuccess), F(s.ParaphraseMagnitude), F(s.ParaphraseTop1));
                t.Add("neighborhood", F(s.NeighborhoodSuccess), F(s.NeighborhoodMagnitude), F(s.NeighborhoodTop1));
                t.WriteTo(io.Out);
                io.Out.WriteLine($"score S (harmonic mean of the successes): {F(s.Score)}");
                io.Out.WriteLine("(success: efficacy/paraphrase P(new) > P(true), neighborhood P(true) > P(new); magnitude: the probability gap; top-1: greedy yields the whole target)");
                if (withFluency)
                {
                    var entropies = cases.Select(c => c.Entropy).Where(double.IsFinite).ToList();
                    io.Out.WriteLine($"generation entropy (fluency): {F(entropies.Count > 0 ? entropies.Average() : double.NaN)} over {entropies.Count} record(s) with generation prompts (n-gram entropy of sampled text; repetitive text scores low)");
                }
            }
            onDone?.Invoke();
            return CliErrors.Ok;
        }));
        return cmd;
    }

    private sealed class Undo(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }

    private static string F(double x) => double.IsNaN(x) ? "-" : x.ToString("0.0000", CultureInfo.InvariantCulture);
}
