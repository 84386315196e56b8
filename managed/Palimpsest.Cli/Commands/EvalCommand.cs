using System.CommandLine;
using System.Globalization;
using Palimpsest.Editing.Data;
using Palimpsest.Evaluation;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest eval MODEL --dataset FILE [--limit N]`: the model's CounterFact scores (efficacy,
/// paraphrase, neighbourhood: success, magnitude, top-1; score S) or zsRE token accuracies, as
/// ROME's evaluation code computes them, for the model as it is (edited or not).
/// </summary>
internal static class EvalCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var dataset = new Option<string>("--dataset") { Description = "CounterFact (EasyEdit or ROME layout) or zsRE file", Required = true };
        var limit = new Option<int?>("--limit") { Description = "evaluate only the first N records" };
        var cmd = new Command("eval", "CounterFact / zsRE scores of a model") { model, dataset, limit };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            int? n = pr.GetValue(limit);
            if (n is <= 0) throw new CliUsageException($"--limit: must be a positive integer (got {n})");
            string file = pr.GetValue(dataset)!;
            var records = DatasetReader.LoadRecords(file, n);
            var format = records[0].Format;
            if (format == DatasetFormat.KnownFacts)
                throw new CliUsageException($"{Path.GetFileName(file)}: known-facts records have no counterfactual target to score; use a CounterFact or zsRE file");
            using var lm = LoadedModel.Open(pr.GetValue(model)!);
            var requests = records.Select(r => r.Request).ToArray();
            bool progress = !Console.IsErrorRedirected;
            io.Out.WriteLine($"{Path.GetFileName(file)}: {requests.Length} record(s), {format}");
            if (format == DatasetFormat.Zsre)
            {
                var ev = new ZsreEvaluator(lm.Tf, lm.Tok);
                var cases = new List<ZsreCase>();
                foreach (var r in requests)
                {
                    cases.Add(ev.Evaluate(r));
                    if (progress && cases.Count % 50 == 0) io.Err.WriteLine($"eval: {cases.Count}/{requests.Length}");
                }
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
                var cases = new List<CounterFactCase>();
                foreach (var r in requests)
                {
                    cases.Add(ev.Evaluate(r));
                    if (progress && cases.Count % 50 == 0) io.Err.WriteLine($"eval: {cases.Count}/{requests.Length}");
                }
                var s = CounterFactEvaluator.Summarize(cases);
                var t = new TextTable(("prompts", false), ("success", true), ("magnitude", true), ("top-1", true));
                t.Add("efficacy (rewrite)", F(s.EfficacySuccess), F(s.EfficacyMagnitude), F(s.EfficacyTop1));
                t.Add("paraphrase", F(s.ParaphraseSuccess), F(s.ParaphraseMagnitude), F(s.ParaphraseTop1));
                t.Add("neighborhood", F(s.NeighborhoodSuccess), F(s.NeighborhoodMagnitude), F(s.NeighborhoodTop1));
                t.WriteTo(io.Out);
                io.Out.WriteLine($"score S (harmonic mean of the successes): {F(s.Score)}");
                io.Out.WriteLine("(success: efficacy/paraphrase P(new) > P(true), neighborhood P(true) > P(new); magnitude: the probability gap; top-1: greedy yields the whole target)");
            }
            return CliErrors.Ok;
        }));
        return cmd;
    }

    private static string F(double x) => double.IsNaN(x) ? "-" : x.ToString("0.0000", CultureInfo.InvariantCulture);
}
