using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Palimpsest.Cli.Parity;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Models;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest parity MODEL --method rome|memit --requests FILE [--limit 20] [--hparams F] [--layers L]
/// [--stats-corpus SPEC] [--official DIR] [--python PATH] [--out DIR]`: the same edits through our
/// editor and through the official ROME/MEMIT code (kmeng01/memit, run unchanged from DIR by
/// bench/peers/official/run_official.py on a PyTorch GPT-2 that loads MODEL), both in float32 on the
/// CPU, with our key statistics and context templates given to both; prints the relative difference
/// of every quantity, one line per request and layer ("request 3 layer 0: dW rel diff 2.1e-06 ..."),
/// and a summary against --bound. The tokens the official code asked for are checked against ours.
/// </summary>
internal static class ParityCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var method = new Option<string>("--method") { Description = $"{string.Join(" or ", OurSide.Methods)} (the methods the official code holds)", DefaultValueFactory = _ => OurSide.Methods[0] };
        method.AcceptOnlyFromAmong(OurSide.Methods);
        var requests = new Option<string>("--requests") { Description = "edit requests (CounterFact, ROME CounterFact or zsRE JSON)", Required = true };
        var limit = new Option<int>("--limit") { Description = "the first N requests (ROME: each edited alone from the unedited weights; MEMIT: one batch of N)", DefaultValueFactory = _ => 20 };
        var hparams = new Option<string?>("--hparams") { Description = "hyper-parameters JSON (default: MODEL/METHOD.json); fields the official code lacks must keep its values" };
        var layer = new Option<string?>("--layers", "--layer") { Description = "edited layer(s), overriding the hparams'" };
        var corpus = KeyStatsOptions.Corpus("--stats-corpus");
        var limitTokens = KeyStatsOptions.LimitTokens();
        var cache = KeyStatsOptions.Cache();
        var official = new Option<string>("--official") { Description = "folder of the official ROME/MEMIT code (kmeng01/memit)", DefaultValueFactory = _ => OfficialPeer.DefaultOfficialDir };
        var python = new Option<string?>("--python") { Description = $"the Python with torch (default /usr/bin/python3, else python3; {OfficialPeer.AptLine})" };
        var outDir = new Option<string?>("--out") { Description = "keep the exchanged files and report.md / report.json in this folder (default: a temporary folder, removed unless the run fails)" };
        var bound = new Option<double>("--bound") { Description = "the largest ΔW relative difference the summary calls a match", DefaultValueFactory = _ => 1e-4 };
        var f64 = new Option<bool>("--f64") { Description = "both sides in float64 (ours on the reference backend, the PyTorch model and the injected statistics in float64) to tell rounding from a difference in the method" };
        var threads = new Option<int>("--threads") { Description = "PyTorch threads on the official side", DefaultValueFactory = _ => 1 };
        var cmd = new Command("parity", "run the same ROME/MEMIT edits through our editor and the official code, and compare ΔW, keys and values")
            { model, method, requests, limit, hparams, layer, corpus, limitTokens, cache, official, python, outDir, bound, f64, threads };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            string folder = pr.GetValue(model)!, name = pr.GetValue(method)!;
            int n = CommonOptions.Positive(pr.GetValue(limit), "--limit");
            int pyThreads = CommonOptions.Positive(pr.GetValue(threads), "--threads");
            var missing = new List<string>();
            var (em, corpusSpec) = EditMethod.Resolve(folder, name, pr.GetValue(hparams), pr.GetValue(layer), pr.GetValue(corpus), io.Err, missing);
            EditMethod.ThrowIfMissing(missing);
            OurSide.CheckComparable(em!);
            var peer = OfficialPeer.Locate(pr.GetValue(python), pr.GetValue(official)!);
            var reqs = DatasetReader.Load(pr.GetValue(requests)!, n);

            bool wide = pr.GetValue(f64);
            using var lm = LoadedModel.Open(folder, new DeviceChoice(F64: wide));
            if (lm.Config.Arch != Architecture.Gpt2)
                throw new CliUsageException($"parity: {folder} is {lm.Config.ModelType}; the PyTorch stand-in for transformers is GPT-2 only");
            var layers = em!.Layers;
            var stats = em.NeedsStats
                ? KeyStatsOptions.GetOrCompute(lm, KeyStatsOptions.Load(corpusSpec!, lm), layers, KeyStatsOptions.CacheDir(pr.GetValue(cache)), pr.GetValue(limitTokens), io)
                    .ToDictionary(kv => kv.Key, kv => kv.Value.Matrix)
                : layers.ToDictionary(l => l, _ => ParityExport.Identity(lm.Config.DFf));
            var editor = em.Create(lm, l => stats[l]);
            ((IPreparedEditor)editor).Prepare(lm.Tf);

            string work = pr.GetValue(outDir) is { } o ? Directory.CreateDirectory(o).FullName : Directory.CreateTempSubdirectory("palimpsest-parity-").FullName;
            bool done = false; // a failed run keeps its temporary folder: the error names the log in it
            try
            {
                io.Err.WriteLine($"parity: {name} on {folder}, {reqs.Count} request(s), layers {string.Join(",", layers)}, {(wide ? "float64" : "float32")}: ours ...");
                var (ours, templates) = OurSide.Run(lm, editor, reqs);
                ours.Save(Path.Combine(work, "ours.safetensors"));
                ParityExport.Write(work, lm, folder, name, em.HparamsJson, reqs, templates, stats, wide);
                io.Err.WriteLine($"parity: the official code ({peer.OfficialDir}) ...");
                double seconds = peer.RunOn(work, pyThreads);
                var officialResult = ReadOfficial(work, lm);
                var rows = ParityComparison.Compare(name, ours, officialResult, layers, reqs.Count, lm.Config.DFf, lm.Config.DModel);
                foreach (var line in ParityComparison.Lines(rows, ours, officialResult)) io.Out.WriteLine(line);
                var summary = Summary(name, folder, reqs.Count, layers, rows, pr.GetValue(bound), wide);
                foreach (var line in summary) io.Out.WriteLine(line);
                WriteReport(work, name, folder, reqs, layers, rows, ours, officialResult, summary, seconds);
                if (pr.GetValue(outDir) is not null) io.Err.WriteLine($"parity: files and report.md in {work}");
                done = true;
            }
            finally
            {
                if (pr.GetValue(outDir) is null && done) try { Directory.Delete(work, recursive: true); } catch (IOException) { }
            }
            return CliErrors.Ok;
        }));
        return cmd;
    }

    private static ParityTensors ReadOfficial(string work, LoadedModel lm)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(work, "official.json")));
        var root = doc.RootElement;
        // every string the official code tokenised must give our ids
        foreach (var p in root.GetProperty("tokenized").EnumerateObject())
        {
            var theirs = p.Value.EnumerateArray().Select(x => x.GetInt32()).ToArray();
            var mine = lm.Tok.Encode(p.Name);
            if (!mine.SequenceEqual(theirs))
                throw new CliUsageException($"parity: the Python tokenizer gives [{string.Join(",", theirs)}] for \"{p.Name}\" where ours gives [{string.Join(",", mine)}]");
        }
        double[] Probs(string k) => root.GetProperty(k).EnumerateArray().Select(x => x.GetDouble()).ToArray();
        return ParityTensors.Load(Path.Combine(work, "official.safetensors"), Probs("prob_before"), Probs("prob_after"));
    }

    private static List<string> Summary(string method, string folder, int n, int[] layers, List<ParityRow> rows, double bound, bool wide)
    {
        var lines = new List<string>();
        string what = $"{method} on {Path.GetFileName(Path.GetFullPath(folder))}, {n} request(s), {(wide ? "float64" : "float32")}";
        foreach (int l in layers)
        {
            var dw = rows.Where(r => r.Layer == l && r.Request is not null && r.Quantity == "dW").OrderBy(r => r.RelDiff).ToList();
            var worst = dw[^1];
            string spread = $"max {ParityComparison.E(worst.RelDiff)} (request {worst.Request}), median {ParityComparison.E(dw[dw.Count / 2].RelDiff)}";
            // ROME: each request's ΔW is an edit; MEMIT: the layer's ΔW is the batch's, the per-request terms its parts
            if (rows.FirstOrDefault(r => r.Layer == l && r.Request is null && r.Quantity == "dW") is { } batch)
                lines.Add($"{what}, layer {l}: batch dW rel diff {ParityComparison.E(batch.RelDiff)} (per-request terms: {spread}): "
                    + $"{(batch.RelDiff <= bound ? "within" : "above")} {ParityComparison.E(bound)}");
            else
                lines.Add($"{what}, layer {l}: dW rel diff {spread}: {(worst.RelDiff <= bound ? "within" : "above")} {ParityComparison.E(bound)}");
        }
        return lines;
    }

    private static void WriteReport(string work, string method, string folder, IReadOnlyList<EditRequest> reqs, int[] layers, List<ParityRow> rows,
        ParityTensors ours, ParityTensors official, List<string> summary, double seconds)
    {
        var json = new JsonObject
        {
            ["method"] = method, ["model"] = folder, ["requests"] = reqs.Count, ["layers"] = new JsonArray(layers.Select(l => (JsonNode)l).ToArray()),
            ["official_seconds"] = seconds,
            ["rows"] = new JsonArray(rows.Select(r => (JsonNode)new JsonObject
            {
                ["request"] = r.Request, ["layer"] = r.Layer, ["quantity"] = r.Quantity, ["rel_diff"] = double.IsFinite(r.RelDiff) ? r.RelDiff : null,
            }).ToArray()),
            ["prob_after_ours"] = new JsonArray(ours.ProbAfter.Select(p => (JsonNode)p).ToArray()),
            ["prob_after_official"] = new JsonArray(official.ProbAfter.Select(p => (JsonNode)p).ToArray()),
            ["summary"] = new JsonArray(summary.Select(s => (JsonNode)s).ToArray()),
        };
        File.WriteAllText(Path.Combine(work, "report.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        var quantities = rows.Select(r => r.Quantity).Distinct().ToList();
        using var md = new StreamWriter(Path.Combine(work, "report.md"));
        md.WriteLine($"# {method} against the official code on {folder}");
        md.WriteLine();
        foreach (var s in summary) md.WriteLine($"- {s}");
        md.WriteLine();
        md.WriteLine("| request | layer | " + string.Join(" | ", quantities) + " | p after (ours) | p after (official) |");
        md.WriteLine("|---|---|" + string.Concat(quantities.Select(_ => "---|")) + "---|---|");
        foreach (var g in rows.Where(r => r.Request is not null && r.Layer is not null).GroupBy(r => (r.Request, r.Layer)))
        {
            int i = g.Key.Request!.Value;
            md.WriteLine($"| {i} | {g.Key.Layer} | " + string.Join(" | ", quantities.Select(q => g.FirstOrDefault(r => r.Quantity == q) is { } r ? ParityComparison.E(r.RelDiff) : ""))
                + string.Create(CultureInfo.InvariantCulture, $" | {ours.ProbAfter[i]:0.0000} | {official.ProbAfter[i]:0.0000} |"));
        }
    }
}
