using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Palimpsest.Analysis;
using Palimpsest.Editing.Data;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest trace MODEL --prompt P --subject S [--answer A] [--kind hidden|mlp|attn|all] [--out DIR]`:
/// ROME's causal tracing of one prompt (a tokens × layers table, PNG heatmaps and JSON with --out), or
/// `--dataset FILE --limit N --out DIR`: the average indirect effect over N records by ROME's six
/// token categories (PNG, Markdown and JSON per kind).
/// </summary>
internal static class TraceCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var prompt = new Option<string?>("--prompt") { Description = "prompt with the subject written in, e.g. \"The mother tongue of Danielle Darrieux is\"" };
        var subject = new Option<string?>("--subject") { Description = "the subject as it occurs in the prompt (its token embeddings are corrupted)" };
        var answer = new Option<string?>("--answer") { Description = "answer whose probability is traced (its first token); default: the model's greedy prediction" };
        var kind = new Option<string>("--kind") { Description = "which state is restored: hidden (block output), mlp, attn or all", DefaultValueFactory = _ => "hidden" };
        kind.AcceptOnlyFromAmong("hidden", "mlp", "attn", "all");
        var samples = new Option<int>("--samples") { Description = "noise samples averaged per score", DefaultValueFactory = _ => 10 };
        var window = new Option<int>("--window") { Description = "layers restored together around each layer for mlp/attn", DefaultValueFactory = _ => 10 };
        var noise = new Option<double?>("--noise-std") { Description = "std of the Gaussian noise on the subject embeddings (default 3 × the std of the subjects' token embeddings)" };
        var dataset = new Option<string?>("--dataset") { Description = "CounterFact/known-facts file: average the traces of its first --limit records (answer = the true object)" };
        var limit = new Option<int>("--limit") { Description = "records traced with --dataset", DefaultValueFactory = _ => 10 };
        var outDir = new Option<string?>("--out") { Description = "folder for the PNG heatmaps and JSON (and the Markdown table with --dataset)" };
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var cmd = new Command("trace", "causal tracing: which hidden states / MLP / attention outputs carry a fact")
            { model, prompt, subject, answer, kind, samples, window, noise, dataset, limit, outDir, device, dtype };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var dev = DeviceChoice.Read(pr, device, dtype);
            dev.Check();
            int nSamples = CommonOptions.Positive(pr.GetValue(samples), "--samples");
            int win = CommonOptions.Positive(pr.GetValue(window), "--window");
            if (pr.GetValue(noise) is <= 0 or double.NaN) throw new CliUsageException("--noise-std: must be a positive number");
            var kinds = Kinds(pr.GetValue(kind)!);
            string? file = pr.GetValue(dataset), dir = pr.GetValue(outDir);
            if (file is not null)
            {
                if (pr.GetValue(prompt) is not null || pr.GetValue(subject) is not null || pr.GetValue(answer) is not null)
                    throw new CliUsageException("--dataset traces the records' own prompts; do not combine it with --prompt, --subject or --answer");
                if (dir is null)
                {
                    // the averaged heatmaps and tables need a folder: one named for the model and dataset, said in one line
                    dir = Path.Combine(Environment.CurrentDirectory, $"trace-{Path.GetFileName(Path.GetFullPath(pr.GetValue(model)!))}-{Path.GetFileNameWithoutExtension(file)}");
                    io.Err.WriteLine($"trace: writing the averaged traces to {dir} (give --out DIR for another folder)");
                }
                int n = CommonOptions.Positive(pr.GetValue(limit), "--limit");
                var records = DatasetReader.Load(file, n);
                using var lm = LoadedModel.Open(pr.GetValue(model)!, dev);
                return TraceDataset(io, lm, records, kinds, nSamples, win, pr.GetValue(noise), dir, Path.GetFileName(file));
            }
            string p = pr.GetValue(prompt) ?? throw new CliUsageException("give --prompt and --subject (or --dataset FILE)");
            string s = pr.GetValue(subject) ?? throw new CliUsageException("give --subject (the subject as written in the prompt)");
            if (s.Length == 0 || !p.Contains(s, StringComparison.Ordinal))
                throw new CliUsageException($"--subject \"{s}\" does not occur in the prompt \"{p}\"");
            if (pr.GetValue(answer) is { } a && a.Trim().Length == 0)
                throw new CliUsageException("--answer is empty: give the answer whose probability is traced (e.g. --answer French), or leave it out for the model's own prediction");
            using (var lm = LoadedModel.Open(pr.GetValue(model)!, dev))
                return TraceOne(io, lm, p, s, pr.GetValue(answer), kinds, nSamples, win, pr.GetValue(noise), dir);
        }));
        return cmd;
    }

    private static TraceKind[] Kinds(string k) => k switch
    {
        "hidden" => [TraceKind.Hidden],
        "mlp" => [TraceKind.Mlp],
        "attn" => [TraceKind.Attn],
        _ => [TraceKind.Hidden, TraceKind.Mlp, TraceKind.Attn],
    };

    private static string Name(TraceKind k) => k.ToString().ToLowerInvariant();

    private static string F(double x) => double.IsNaN(x) ? "-" : x.ToString("0.000", CultureInfo.InvariantCulture);

    private static int TraceOne(CliIo io, LoadedModel lm, string prompt, string subject, string? answer, TraceKind[] kinds,
        int samples, int window, double? noiseStd, string? dir)
    {
        double std = noiseStd ?? 3 * CausalTracer.EmbeddingStd(lm.Model, lm.Tok, [subject]);
        var tracer = new CausalTracer(lm.Tf, lm.Tok, std, samples, window);
        if (dir is not null) Directory.CreateDirectory(dir);
        var results = new List<TraceResult>();
        foreach (var k in kinds)
        {
            var r = tracer.Trace(prompt, subject, k, answer);
            results.Add(r);
            io.Out.WriteLine($"{Name(k)}: p({TokenText.Quote(r.Answer)}) clean {F(r.HighScore)}, subject corrupted {F(r.LowScore)} " +
                $"(noise std {std.ToString("0.0000", CultureInfo.InvariantCulture)}, {samples} samples{(k == TraceKind.Hidden ? "" : $", window {window}")})");
            WriteScores(io.Out, r);
            io.Out.WriteLine();
            if (dir is not null)
            {
                string png = Path.Combine(dir, $"trace-{Name(k)}.png");
                Heatmap.WritePng(png, r.Scores, RowLabels(r), $"{Name(k)} restored: p({r.Answer.Trim()}) | {prompt}", "layer", "p(answer)");
                io.Out.WriteLine($"wrote {png}");
            }
        }
        if (dir is not null)
        {
            string json = Path.Combine(dir, "trace.json");
            File.WriteAllText(json, TraceJson(results, std, samples, window));
            io.Out.WriteLine($"wrote {json}");
        }
        return CliErrors.Ok;
    }

    /// <summary>Token labels, the subject's marked with '*'.</summary>
    private static string[] RowLabels(TraceResult r) =>
        r.Tokens.Select((t, i) => TokenText.Quote(t) + (i >= r.SubjectFirst && i <= r.SubjectLast ? "*" : "")).ToArray();

    private static void WriteScores(TextWriter w, TraceResult r)
    {
        int T = r.Scores.GetLength(0), L = r.Scores.GetLength(1);
        var cols = new List<(string, bool)> { ("token", false) };
        for (int l = 0; l < L; l++) cols.Add((l.ToString(CultureInfo.InvariantCulture), true));
        var table = new TextTable([.. cols]);
        var labels = RowLabels(r);
        for (int t = 0; t < T; t++)
        {
            var row = new string[L + 1];
            row[0] = labels[t];
            for (int l = 0; l < L; l++) row[l + 1] = F(r.Scores[t, l]);
            table.Add(row);
        }
        table.WriteTo(w);
        w.WriteLine("(* = subject token; columns = layers; cells = p(answer) with that state restored)");
    }

    private static string TraceJson(IReadOnlyList<TraceResult> results, double std, int samples, int window)
    {
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            var r0 = results[0];
            w.WriteStartObject();
            w.WriteString("prompt", r0.Prompt);
            w.WriteString("subject", r0.Subject);
            w.WriteString("answer", r0.Answer);
            w.WriteNumber("answer_id", r0.AnswerId);
            w.WriteStartArray("tokens"); foreach (var t in r0.Tokens) w.WriteStringValue(t); w.WriteEndArray();
            w.WriteNumber("subject_first", r0.SubjectFirst);
            w.WriteNumber("subject_last", r0.SubjectLast);
            w.WriteNumber("noise_std", std);
            w.WriteNumber("samples", samples);
            w.WriteNumber("window", window);
            w.WriteStartObject("kinds");
            foreach (var r in results)
            {
                w.WriteStartObject(Name(r.Kind));
                w.WriteNumber("high", r.HighScore);
                w.WriteNumber("low", r.LowScore);
                WriteMatrix(w, "scores", r.Scores);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void WriteMatrix(Utf8JsonWriter w, string name, double[,] m)
    {
        w.WriteStartArray(name);
        for (int i = 0; i < m.GetLength(0); i++)
        {
            w.WriteStartArray();
            for (int j = 0; j < m.GetLength(1); j++)
                if (double.IsNaN(m[i, j])) w.WriteNullValue(); else w.WriteNumberValue(m[i, j]);
            w.WriteEndArray();
        }
        w.WriteEndArray();
    }

    private static int TraceDataset(CliIo io, LoadedModel lm, IReadOnlyList<Palimpsest.Editing.EditRequest> records, TraceKind[] kinds,
        int samples, int window, double? noiseStd, string dir, string fileName)
    {
        double std = noiseStd ?? 3 * CausalTracer.EmbeddingStd(lm.Model, lm.Tok, records.Select(r => r.Subject));
        var tracer = new CausalTracer(lm.Tf, lm.Tok, std, samples, window);
        Directory.CreateDirectory(dir);
        var traces = kinds.ToDictionary(k => k, _ => new List<TraceResult>());
        var skipped = new List<string>();
        CliProgress.Run(io, $"trace, {records.Count} records", p =>
        {
            for (int i = 0; i < records.Count; i++)
            {
                var req = records[i];
                // all kinds of a record or none, so every kind averages over the same records
                try
                {
                    var done = kinds.Select(k => tracer.Trace(req.FilledPrompt, req.Subject, k, req.TargetTrue)).ToList();
                    for (int j = 0; j < kinds.Length; j++) traces[kinds[j]].Add(done[j]);
                }
                catch (ArgumentException e) { skipped.Add($"record {i} ({CliErrors.OneLine(e.Message)})"); }
                p.Report((i + 1) / (double)records.Count);
            }
            return 0;
        });
        int used = traces[kinds[0]].Count;
        if (used == 0) throw new CliUsageException($"no record of {fileName} could be traced: {skipped[0]}");
        var md = new StringBuilder();
        md.AppendLine($"# Causal tracing of {Path.GetFileName(Path.GetFullPath(lm.Folder))}").AppendLine();
        md.AppendLine($"{used} records of {fileName} (answer = the true object), noise std {std.ToString("0.0000", CultureInfo.InvariantCulture)}, " +
            $"{samples} samples, window {window}. Cells: average indirect effect p(answer | corrupted, state restored) − p(answer | corrupted).").AppendLine();
        var jsonMs = new MemoryStream();
        using (var w = new Utf8JsonWriter(jsonMs, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("dataset", fileName);
            w.WriteNumber("records", used);
            w.WriteNumber("noise_std", std);
            w.WriteNumber("samples", samples);
            w.WriteNumber("window", window);
            w.WriteStartObject("kinds");
            foreach (var k in kinds)
            {
                var list = traces[k];
                var (effect, rows) = CausalTracer.Average(list);
                double high = list.Average(t => t.HighScore), low = list.Average(t => t.LowScore);
                int L = effect.GetLength(1);
                io.Out.WriteLine($"{Name(k)}: average over {used} records, clean p {F(high)}, corrupted p {F(low)}; average indirect effect:");
                var cols = new List<(string, bool)> { ("token", false) };
                for (int l = 0; l < L; l++) cols.Add((l.ToString(CultureInfo.InvariantCulture), true));
                var table = new TextTable([.. cols]);
                md.AppendLine($"## {Name(k)} restored (clean p {F(high)}, corrupted p {F(low)})").AppendLine();
                md.AppendLine("| token \\ layer | " + string.Join(" | ", Enumerable.Range(0, L)) + " |");
                md.AppendLine("|---|" + string.Concat(Enumerable.Repeat("---:|", L)));
                for (int c = 0; c < rows.Length; c++)
                {
                    var cells = Enumerable.Range(0, L).Select(l => F(effect[c, l])).ToArray();
                    table.Add([rows[c], .. cells]);
                    md.AppendLine($"| {rows[c]} | {string.Join(" | ", cells)} |");
                }
                md.AppendLine();
                table.WriteTo(io.Out);
                io.Out.WriteLine();
                string png = Path.Combine(dir, $"trace-average-{Name(k)}.png");
                Heatmap.WritePng(png, effect, rows, $"{Name(k)} restored: average indirect effect, {used} records", "layer", "AIE");
                io.Out.WriteLine($"wrote {png}");
                w.WriteStartObject(Name(k));
                w.WriteNumber("high", high);
                w.WriteNumber("low", low);
                w.WriteStartArray("rows"); foreach (var r in rows) w.WriteStringValue(r); w.WriteEndArray();
                WriteMatrix(w, "effect", effect);
                w.WriteEndObject();
            }
            w.WriteEndObject();
            w.WriteStartArray("skipped"); foreach (var s in skipped) w.WriteStringValue(s); w.WriteEndArray();
            w.WriteEndObject();
        }
        if (skipped.Count > 0)
        {
            io.Out.WriteLine($"skipped {skipped.Count} record(s): {string.Join("; ", skipped)}");
            md.AppendLine($"Skipped {skipped.Count} record(s): {string.Join("; ", skipped)}");
        }
        string mdPath = Path.Combine(dir, "trace-average.md"), jsonPath = Path.Combine(dir, "trace-average.json");
        File.WriteAllText(mdPath, md.ToString());
        File.WriteAllBytes(jsonPath, jsonMs.ToArray());
        io.Out.WriteLine($"wrote {mdPath}");
        io.Out.WriteLine($"wrote {jsonPath}");
        return CliErrors.Ok;
    }
}
