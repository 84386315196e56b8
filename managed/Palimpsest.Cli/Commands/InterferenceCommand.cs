using System.CommandLine;
using System.Globalization;
using System.Text;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Evaluation;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest interference MODEL --method rome|memit|alphaedit --dataset FILE --edits N [--bank-limit M]
/// [--hparams FILE] [--stats-corpus ...] --report DIR`: the interference monitor against measured
/// damage. Records 0..N−1 are edited one at a time into the unedited model; the bank is the next M
/// records (their true answers); for every (edit, bank fact) pair the forecast drift and the fact's
/// NLL rise are written to DIR/interference.csv, with DIR/interference.md (correlations, lost-fact
/// rates) and DIR/interference.png (relative drift against NLL rise).
/// </summary>
internal static class InterferenceCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var method = new Option<string>("--method") { Description = $"editing method: {string.Join(", ", Editors.All.Where(k => !k.Has(EditorCapabilities.Adaptor)).Select(k => k.Name))}", DefaultValueFactory = _ => Editors.Rome.Name };
        var dataset = new Option<string>("--dataset") { Description = "CounterFact / zsRE file: the edits are its first --edits records, the bank the next --bank-limit", Required = true };
        var edits = new Option<int>("--edits") { Description = "number of single edits", DefaultValueFactory = _ => 50 };
        var bankLimit = new Option<int>("--bank-limit") { Description = "facts in the bank", DefaultValueFactory = _ => 200 };
        var layer = new Option<string?>("--layers", "--layer") { Description = "MLP layer(s) to edit; overrides the hparams file's" };
        var hparams = new Option<string?>("--hparams") { Description = "hyper-parameters JSON with the reference names; missing keys keep the defaults" };
        var corpus = KeyStatsOptions.Corpus("--stats-corpus");
        var limitTokens = KeyStatsOptions.LimitTokens();
        var cache = KeyStatsOptions.Cache();
        var report = new Option<string>("--report") { Description = "folder for interference.csv, .md and .png", Required = true };
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var cmd = new Command("interference", "the interference monitor's forecast (||dW k||) against the measured damage of single edits")
            { model, method, dataset, edits, bankLimit, layer, hparams, corpus, limitTokens, cache, report, device, dtype };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var dev = DeviceChoice.Read(pr, device, dtype);
            dev.Check();
            int n = CommonOptions.Positive(pr.GetValue(edits), "--edits");
            int m = CommonOptions.Positive(pr.GetValue(bankLimit), "--bank-limit");
            var all = DatasetReader.Load(pr.GetValue(dataset)!, n + m);
            if (all.Count < n + 1) throw new CliUsageException($"--edits {n}: the dataset has only {all.Count} records");
            var stream = all.Take(n).ToList();
            var bank = all.Skip(n).Where(r => r.TargetTrue is not null).ToList();
            if (bank.Count == 0) throw new CliUsageException("the bank (the records after --edits) has no record with a true target");
            using var lm = LoadedModel.Open(pr.GetValue(model)!, dev);
            int[]? layers = pr.GetValue(layer) is { } lt ? EditingErrors.ParseLayers(lt, lm.Config.Layers, "--layers") : null;
            var em = EditMethod.Parse(pr.GetValue(method)!, pr.GetValue(hparams), layers);
            var editor = em.Create(lm, pr.GetValue(corpus), pr.GetValue(limitTokens), pr.GetValue(cache), io);
            var probes = new FactProbes(lm.Tok, em.FactToken);
            io.Err.WriteLine($"interference: {n} single {em.Name} edits, a bank of {bank.Count} facts");
            var r = InterferenceStudy.Run(lm.Tf, lm.Tok, editor, probes, stream, bank);

            string dir = pr.GetValue(report)!;
            Directory.CreateDirectory(dir);
            static string F(double x) => x.ToString("0.######", CultureInfo.InvariantCulture);
            var csv = new StringBuilder("edit,fact,drift,relative,nll_before,nll_after,answered_before,answered_after\n");
            foreach (var p in r.Pairs)
                csv.Append(CultureInfo.InvariantCulture, $"{p.Edit},\"{p.Fact.Replace("\"", "\"\"")}\",{F(p.Drift)},{F(p.Relative)},{F(p.NllBefore)},{F(p.NllAfter)},{p.AnsweredBefore},{p.AnsweredAfter}\n");
            Palimpsest.Models.AtomicFile.WriteAllText(Path.Combine(dir, "interference.csv"), csv.ToString());
            var top = r.Pairs.OrderByDescending(p => p.Relative).Take(10).ToArray();
            var md = new StringBuilder();
            md.AppendLine($"# Interference monitor: forecast against measured damage ({em.Name}, {Path.GetFileName(Path.GetFullPath(pr.GetValue(model)!))})");
            md.AppendLine();
            md.AppendLine($"{n} single edits (records 0..{n - 1} of {Path.GetFileName(pr.GetValue(dataset)!)}), each into the unedited model; a bank of {bank.Count} facts (the next records, their true answers); {r.Pairs.Count} (edit, fact) pairs.");
            md.AppendLine("Forecast: relative drift = ||ΔW k_fact|| / ||ΔW k_edit|| at the edited layer(s). Measured: the rise of the fact's NLL of its true answer, and whether greedy decoding loses it.");
            md.AppendLine();
            md.AppendLine("| measure | value |");
            md.AppendLine("|---|---:|");
            md.AppendLine($"| Pearson (relative drift, NLL rise) | {r.Pearson.ToString("0.000", CultureInfo.InvariantCulture)} |");
            md.AppendLine($"| Spearman (relative drift, NLL rise) | {r.Spearman.ToString("0.000", CultureInfo.InvariantCulture)} |");
            md.AppendLine($"| facts lost, relative drift ≥ {InterferenceStudy.HighRisk} | {Rate(r.LostRateHigh)} of {r.HighPairs} |");
            md.AppendLine($"| facts lost, relative drift < {InterferenceStudy.HighRisk} | {Rate(r.LostRateLow)} of {r.LowPairs} |");
            md.AppendLine();
            md.AppendLine("The ten pairs with the largest forecast:");
            md.AppendLine();
            md.AppendLine("| edit | fact | relative drift | NLL before → after | lost |");
            md.AppendLine("|---:|---|---:|---|---|");
            foreach (var p in top)
                md.AppendLine($"| {p.Edit} | {p.Fact} | {F(Math.Round(p.Relative, 3))} | {p.NllBefore.ToString("0.00", CultureInfo.InvariantCulture)} → {p.NllAfter.ToString("0.00", CultureInfo.InvariantCulture)} | {(p.Lost ? "yes" : "no")} |");
            Palimpsest.Models.AtomicFile.WriteAllText(Path.Combine(dir, "interference.md"), md.ToString());
            SuperpositionPlots.Scatter(Path.Combine(dir, "interference.png"), r.Pairs.Select(p => p.Relative).ToArray(), r.Pairs.Select(p => p.NllRise).ToArray(),
                $"{em.Name}: forecast against damage (Pearson {r.Pearson.ToString("0.00", CultureInfo.InvariantCulture)}, Spearman {r.Spearman.ToString("0.00", CultureInfo.InvariantCulture)})",
                "relative drift ||dW k_fact|| / ||dW k_edit||", "NLL rise of the fact's true answer");
            io.Out.Write(md.ToString());
            io.Out.WriteLine($"wrote {dir}/interference.csv, interference.md, interference.png");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    private static string Rate(double x) => double.IsNaN(x) ? "n/a" : x.ToString("0.000", CultureInfo.InvariantCulture);
}
