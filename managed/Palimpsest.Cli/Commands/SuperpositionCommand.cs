using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Palimpsest.Analysis;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Evaluation;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest superposition MODEL [MODEL...] --facts FILE [--limit 128] [--known-only]
/// --stats-corpus FILE|facts:PATH --report DIR`: the "Knowledge in Superposition" analysis of each
/// model at every layer (P, Q, whitened and raw cosines of the facts' keys; see
/// Analysis.Superposition). Per model DIR/NAME/ gets superposition.md (a table per layer),
/// superposition.json (statistics, histograms, KDEs), matrices.safetensors (P and the cosines,
/// float64) and PNGs; with several models DIR/ also gets a summary and kurtosis against width.
/// </summary>
internal static class SuperpositionCommand
{
    // P heatmaps show the first HeatmapFacts facts; at most MaxPlottedLayers layers get the per-layer PNGs.
    private const int HeatmapFacts = 64, MaxPlottedLayers = 12;

    public static Command Create(CliIo io)
    {
        var models = new Argument<string[]>("models")
        {
            Description = "model folder(s) in Hugging Face layout; with several, kurtosis is also plotted against width",
            Arity = ArgumentArity.OneOrMore,
        };
        var facts = new Option<string>("--facts") { Description = "CounterFact / known-facts file whose subjects and prompts give the keys", Required = true };
        var limit = new Option<int>("--limit") { Description = "facts analysed (the first N, or the first N known with --known-only)", DefaultValueFactory = _ => 128 };
        var known = new Option<bool>("--known-only") { Description = "use only facts whose true object the model answers (greedy, every token)" };
        var corpus = KeyStatsOptions.Corpus("--stats-corpus");
        corpus.Required = true;
        var limitTokens = KeyStatsOptions.LimitTokens();
        var cache = KeyStatsOptions.Cache();
        var report = new Option<string>("--report") { Description = "folder for the Markdown, JSON, safetensors and PNG outputs", Required = true };
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var cmd = new Command("superposition", "are the facts' keys orthogonal after whitening? P matrices and their distributions per layer (Hu et al. 2024)")
            { models, facts, limit, known, corpus, limitTokens, cache, report, device, dtype };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var dev = DeviceChoice.Read(pr, device, dtype);
            dev.Check();
            int n = CommonOptions.Positive(pr.GetValue(limit), "--limit");
            if (n < 2) throw new CliUsageException("--limit: the statistics are over pairs of facts; give at least 2");
            string file = pr.GetValue(facts)!;
            var records = DatasetReader.Load(file); // reads the whole file: --known-only may need facts past the first N
            string dir = pr.GetValue(report)!;
            string spec = pr.GetValue(corpus)!;
            if (!File.Exists(KeyStatsOptions.PathOf(spec))) throw new FileNotFoundException($"--stats-corpus: file '{KeyStatsOptions.PathOf(spec)}' not found");
            Directory.CreateDirectory(dir);
            var done = new List<(string Name, ModelConfig Config, SuperpositionResult Result)>();
            var names = new HashSet<string>();
            foreach (var folder in pr.GetValue(models)!)
            {
                using var lm = LoadedModel.Open(folder, dev);
                string name = Path.GetFileName(Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar));
                for (int k = 2; !names.Add(name); k++) name = $"{Path.GetFileName(Path.GetFullPath(folder).TrimEnd(Path.DirectorySeparatorChar))}-{k}";
                var chosen = ChooseFacts(io, lm, records, n, pr.GetValue(known), Path.GetFileName(file));
                var c = KeyStatsOptions.Load(spec, lm);
                var stats = KeyStatsOptions.GetOrCompute(lm, c, Enumerable.Range(0, lm.Config.Layers).ToArray(),
                    KeyStatsOptions.CacheDir(pr.GetValue(cache)), pr.GetValue(limitTokens), io);
                var result = Superposition.Analyze(lm.Tf, lm.Tok, chosen, stats);
                long tokens = stats.Values.First().TokenCount;
                WriteModel(io, Path.Combine(dir, name), name, lm.Config, result, Path.GetFileName(file), c.Name, tokens, pr.GetValue(known));
                done.Add((name, lm.Config, result));
            }
            if (done.Count > 1) WriteAcrossModels(io, dir, done);
            return CliErrors.Ok;
        }));
        return cmd;
    }

    /// <summary>The first n facts (known ones with --known-only) whose subject can be located in the prompt.</summary>
    private static List<EditRequest> ChooseFacts(CliIo io, LoadedModel lm, IReadOnlyList<EditRequest> records, int n, bool knownOnly, string fileName)
    {
        var probes = new FactProbes(lm.Tok);
        var answer = knownOnly ? new FactProbe(lm.Tf, lm.Tok) : null;
        var chosen = new List<EditRequest>();
        int unknown = 0, unlocated = 0, seen = 0;
        foreach (var r in records)
        {
            if (chosen.Count == n) break;
            seen++;
            try { probes.Encode(r.Prompt, r.Subject); }
            catch (ArgumentException) { unlocated++; continue; }
            if (answer is not null && (r.TargetTrue is null || !answer.Answers(r, r.TargetTrue))) { unknown++; continue; }
            chosen.Add(r);
        }
        if (chosen.Count < 2)
            throw new CliUsageException($"{fileName}: only {chosen.Count} usable fact(s) of {records.Count}" +
                (knownOnly ? $" ({unknown} not known by the model)" : "") + (unlocated > 0 ? $" ({unlocated} whose subject is not in the prompt's tokens)" : "") +
                "; the statistics are over pairs");
        string why = (knownOnly ? $", skipping {unknown} the model does not answer" : "") + (unlocated > 0 ? $", {unlocated} whose subject could not be located" : "");
        io.Out.WriteLine($"{Path.GetFileName(Path.GetFullPath(lm.Folder).TrimEnd(Path.DirectorySeparatorChar))}: {chosen.Count} facts of {fileName} " +
            $"(read {seen} of {records.Count}{why})");
        return chosen;
    }

    private static string F(double x, string fmt = "0.000") => double.IsFinite(x) ? x.ToString(fmt, CultureInfo.InvariantCulture) : "-";

    private static int[] PlottedLayers(int count) => count <= MaxPlottedLayers
        ? Enumerable.Range(0, count).ToArray()
        : Enumerable.Range(0, MaxPlottedLayers).Select(i => (int)Math.Round(i * (count - 1.0) / (MaxPlottedLayers - 1))).Distinct().ToArray();

    private static void WriteModel(CliIo io, string dir, string name, ModelConfig config, SuperpositionResult r, string factsName, string corpusName, long tokens, bool knownOnly)
    {
        Directory.CreateDirectory(dir);
        int n = r.Facts.Count;
        var table = new TextTable(("layer", true), ("p mean", true), ("p std", true), ("p kurt", true),
            ("wcos mean", true), ("wcos std", true), ("wcos kurt", true), ("cos mean", true), ("cos std", true), ("cos kurt", true));
        var md = new StringBuilder();
        md.AppendLine($"# Knowledge in superposition: {name}").AppendLine();
        md.AppendLine($"{n} facts of {factsName}{(knownOnly ? " that the model answers" : "")}; key = MLP key (input of the down-projection, " +
            $"{r.KeyDim} dims) at the subject's last token of the bare prompt; C = E[k kᵀ] over {tokens:N0} tokens of {corpusName}. " +
            $"d_model {config.DModel}, d_ff {config.DFf}, {config.Layers} layers.").AppendLine();
        md.AppendLine("Statistics of the n(n − 1) off-diagonal entries: p = kᵢᵀC⁻¹kⱼ / kᵢᵀC⁻¹kᵢ (whitened, what a ROME edit of i does to j), " +
            "wcos = whitened cosine, cos = raw cosine; kurtosis is excess (Fisher, biased; 0 for a normal).").AppendLine();
        // Facts sharing a subject whose prompts both open with it have identical keys (p = 1): real
        // pairs, but a few of them dominate the tails, so the reader should know how many there are.
        int sameSubject = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                if (i != j && r.Facts[i].Subject == r.Facts[j].Subject) sameSubject++;
        if (sameSubject > 0)
        {
            string line = $"{sameSubject} of the {n * (n - 1)} off-diagonal entries pair facts with the same subject (identical keys when both prompts open with it); they weigh on the tails and so on the kurtosis.";
            md.AppendLine(line).AppendLine();
            io.Out.WriteLine($"{name}: {line}");
        }
        md.AppendLine("| layer | p mean | p std | p kurtosis | wcos mean | wcos std | wcos kurtosis | cos mean | cos std | cos kurtosis | w angle mean (°) | raw angle mean (°) |");
        md.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var l in r.Layers)
        {
            string[] cells = [l.Layer.ToString(CultureInfo.InvariantCulture), F(l.P.Mean, "0.0000"), F(l.P.Std, "0.0000"), F(l.P.ExcessKurtosis),
                F(l.WhitenedCosine.Mean, "0.0000"), F(l.WhitenedCosine.Std, "0.0000"), F(l.WhitenedCosine.ExcessKurtosis),
                F(l.RawCosine.Mean, "0.0000"), F(l.RawCosine.Std, "0.0000"), F(l.RawCosine.ExcessKurtosis)];
            table.Add(cells);
            md.AppendLine($"| {string.Join(" | ", cells)} | {F(l.WhitenedAngle.Mean, "0.0")} | {F(l.RawAngle.Mean, "0.0")} |");
        }
        md.AppendLine();
        foreach (var l in r.Layers.Where(l => l.Matrices.Note is not null))
            md.AppendLine($"Layer {l.Layer}: {l.Matrices.Note}.").AppendLine();
        io.Out.WriteLine($"{name}: off-diagonal statistics per layer (p whitened, wcos whitened cosine, cos raw cosine; excess kurtosis)");
        table.WriteTo(io.Out);
        foreach (var l in r.Layers.Where(l => l.Matrices.Note is not null)) io.Out.WriteLine($"layer {l.Layer}: {l.Matrices.Note}");

        var pngs = new List<string>();
        foreach (int i in PlottedLayers(r.Layers.Count))
        {
            var l = r.Layers[i];
            string heat = $"p-layer{l.Layer}.png", kde = $"kde-layer{l.Layer}.png";
            SuperpositionPlots.PHeatmap(Path.Combine(dir, heat), l.Matrices.P, n, HeatmapFacts, $"{name} layer {l.Layer}: P, first {Math.Min(n, HeatmapFacts)} facts");
            SuperpositionPlots.Kdes(Path.Combine(dir, kde), [("whitened cosine", l.WhitenedCosine.Density), ("raw cosine", l.RawCosine.Density)],
                $"{name} layer {l.Layer}: cosines of the facts' keys", "cosine");
            pngs.Add(heat); pngs.Add(kde);
        }
        double[] xs = r.Layers.Select(l => (double)l.Layer).ToArray();
        SuperpositionPlots.Lines(Path.Combine(dir, "kurtosis.png"),
            [("p (whitened)", xs, r.Layers.Select(l => l.P.ExcessKurtosis).ToArray()),
             ("whitened cosine", xs, r.Layers.Select(l => l.WhitenedCosine.ExcessKurtosis).ToArray()),
             ("raw cosine", xs, r.Layers.Select(l => l.RawCosine.ExcessKurtosis).ToArray())],
            $"{name}: excess kurtosis per layer", "layer", "excess kurtosis");
        pngs.Insert(0, "kurtosis.png");
        foreach (var png in pngs) md.AppendLine($"![{Path.GetFileNameWithoutExtension(png)}]({png})").AppendLine();

        File.WriteAllText(Path.Combine(dir, "superposition.md"), md.ToString());
        File.WriteAllBytes(Path.Combine(dir, "superposition.json"), Json(name, config, r, factsName, corpusName, tokens, knownOnly));
        var tensors = new List<(string, HostTensor, string)>();
        foreach (var l in r.Layers)
        {
            tensors.Add(($"p.{l.Layer}", new HostTensor([n, n], l.Matrices.P), "F64"));
            tensors.Add(($"whitened_cosine.{l.Layer}", new HostTensor([n, n], l.Matrices.WhitenedCosine), "F64"));
            tensors.Add(($"raw_cosine.{l.Layer}", new HostTensor([n, n], l.Matrices.RawCosine), "F64"));
        }
        SafetensorsWriter.Write(Path.Combine(dir, "matrices.safetensors"), tensors);
        io.Out.WriteLine($"wrote {Path.Combine(dir, "superposition.md")}, superposition.json, matrices.safetensors and {pngs.Count} PNG(s)");
    }

    private static byte[] Json(string name, ModelConfig config, SuperpositionResult r, string factsName, string corpusName, long tokens, bool knownOnly)
    {
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("model", name);
            w.WriteNumber("d_model", config.DModel);
            w.WriteNumber("d_ff", config.DFf);
            w.WriteNumber("layers", config.Layers);
            w.WriteString("facts_file", factsName);
            w.WriteBoolean("known_only", knownOnly);
            w.WriteString("stats_corpus", corpusName);
            w.WriteNumber("stats_tokens", tokens);
            w.WriteStartArray("facts");
            foreach (var f in r.Facts)
            {
                w.WriteStartObject();
                if (f.CaseId is not null) w.WriteString("case_id", f.CaseId);
                w.WriteString("subject", f.Subject);
                w.WriteString("prompt", f.Prompt);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartArray("per_layer");
            foreach (var l in r.Layers)
            {
                w.WriteStartObject();
                w.WriteNumber("layer", l.Layer);
                w.WriteNumber("ridge", l.Matrices.Ridge);
                if (l.Matrices.Note is not null) w.WriteString("note", l.Matrices.Note);
                Summary(w, "p", l.P);
                Summary(w, "q", l.Q);
                Summary(w, "whitened_cosine", l.WhitenedCosine);
                Summary(w, "raw_cosine", l.RawCosine);
                Summary(w, "whitened_angle_deg", l.WhitenedAngle);
                Summary(w, "raw_angle_deg", l.RawAngle);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    private static void Summary(Utf8JsonWriter w, string name, DistributionSummary s)
    {
        static void Num(Utf8JsonWriter w, string n, double x) { if (double.IsFinite(x)) w.WriteNumber(n, x); else w.WriteNull(n); }
        static void Arr(Utf8JsonWriter w, string n, IEnumerable<double> xs) { w.WriteStartArray(n); foreach (var x in xs) w.WriteNumberValue(x); w.WriteEndArray(); }
        w.WriteStartObject(name);
        w.WriteNumber("count", s.Count);
        Num(w, "mean", s.Mean); Num(w, "std", s.Std); Num(w, "excess_kurtosis", s.ExcessKurtosis);
        Num(w, "min", s.Min); Num(w, "max", s.Max);
        w.WriteStartObject("histogram");
        Arr(w, "edges", s.Histogram.Edges);
        w.WriteStartArray("counts"); foreach (var c in s.Histogram.Counts) w.WriteNumberValue(c); w.WriteEndArray();
        w.WriteEndObject();
        w.WriteStartObject("kde");
        Num(w, "bandwidth", s.Density.Bandwidth);
        Arr(w, "grid", s.Density.Grid);
        Arr(w, "density", s.Density.Density);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    /// <summary>With several models: a summary table (mean over layers) and kurtosis against width (d_model).</summary>
    private static void WriteAcrossModels(CliIo io, string dir, IReadOnlyList<(string Name, ModelConfig Config, SuperpositionResult Result)> done)
    {
        var md = new StringBuilder();
        md.AppendLine("# Knowledge in superposition across models").AppendLine();
        md.AppendLine("Excess kurtosis of the off-diagonal entries, averaged over layers (per-layer tables in each model's folder).").AppendLine();
        md.AppendLine("| model | d_model | d_ff | layers | facts | p kurtosis | whitened cosine kurtosis | raw cosine kurtosis |");
        md.AppendLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        var byWidth = done.OrderBy(d => d.Config.DModel).ToList();
        foreach (var (name, c, r) in byWidth)
            md.AppendLine($"| [{name}]({name}/superposition.md) | {c.DModel} | {c.DFf} | {c.Layers} | {r.Facts.Count} | {F(r.Layers.Average(l => l.P.ExcessKurtosis))} | " +
                $"{F(r.Layers.Average(l => l.WhitenedCosine.ExcessKurtosis))} | {F(r.Layers.Average(l => l.RawCosine.ExcessKurtosis))} |");
        md.AppendLine().AppendLine("![kurtosis against width](kurtosis-width.png)");
        double[] x = byWidth.Select(d => (double)d.Config.DModel).ToArray();
        SuperpositionPlots.Lines(Path.Combine(dir, "kurtosis-width.png"),
            [("p (whitened)", x, byWidth.Select(d => d.Result.Layers.Average(l => l.P.ExcessKurtosis)).ToArray()),
             ("whitened cosine", x, byWidth.Select(d => d.Result.Layers.Average(l => l.WhitenedCosine.ExcessKurtosis)).ToArray()),
             ("raw cosine", x, byWidth.Select(d => d.Result.Layers.Average(l => l.RawCosine.ExcessKurtosis)).ToArray())],
            "excess kurtosis (mean over layers) against width", "d_model", "excess kurtosis");
        File.WriteAllText(Path.Combine(dir, "superposition.md"), md.ToString());
        io.Out.WriteLine($"wrote {Path.Combine(dir, "superposition.md")} and kurtosis-width.png ({done.Count} models)");
    }
}
