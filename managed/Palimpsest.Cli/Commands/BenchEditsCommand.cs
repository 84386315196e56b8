using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Models;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest bench-edits MODEL --methods rome,memit,alphaedit,ultraedit --batch 1,8,100 --edits N
/// [--dataset FILE] [--hparams-dir DIR] [--layers L] [--stats-corpus SPEC] [--device cpu|cuda] [--out DIR]`:
/// edit throughput. For each method and batch size, N edits of the dataset applied in batches (a
/// stream: each batch sees the earlier ones), after one untimed warm-up batch; edits per second
/// and the time of each phase (keys, values = v*/z* or gradients, solve, apply). The key statistics
/// are computed once, fresh, and reported apart, as is each method's one-time preparation (context
/// templates, C's factors, a norm anchor). One line per method and batch on stdout, ending with
/// its rate; bench-edits.json and bench-edits.md (machine, device, date, load) with --out.
/// </summary>
internal static class BenchEditsCommand
{
    private static readonly string[] Phases = ["keys", "values", "solve"];

    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var methods = new Option<string>("--methods") { Description = $"comma-separated methods of the editor table ({Editors.Names})", DefaultValueFactory = _ => "rome,memit,alphaedit,ultraedit" };
        var batches = new Option<string>("--batch") { Description = "comma-separated batch sizes (methods that edit one request at a time run at 1 only)", DefaultValueFactory = _ => "1,8" };
        var edits = new Option<int>("--edits") { Description = "edits timed per method and batch size (rounded down to whole batches, at least one)", DefaultValueFactory = _ => 16 };
        var dataset = new Option<string?>("--dataset") { Description = "CounterFact / zsRE requests to edit with (default MODEL/requests.json)" };
        var hparamsDir = new Option<string?>("--hparams-dir") { Description = "folder holding METHOD.json for each method (default: the model folder)" };
        var layer = new Option<string?>("--layers", "--layer") { Description = "layers to edit, overriding every method's hparams (not WilKE's)" };
        var corpus = KeyStatsOptions.Corpus("--stats-corpus");
        var limitTokens = KeyStatsOptions.LimitTokens();
        var outDir = new Option<string?>("--out") { Description = "folder for bench-edits.json and bench-edits.md" };
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var cmd = new Command("bench-edits", "edit throughput: edits per second and time per phase for each method and batch size")
            { model, methods, batches, edits, dataset, hparamsDir, layer, corpus, limitTokens, outDir, device, dtype };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var dev = DeviceChoice.Read(pr, device, dtype);
            dev.Check();
            string folder = pr.GetValue(model)!;
            int n = CommonOptions.Positive(pr.GetValue(edits), "--edits");
            var sizes = pr.GetValue(batches)!.Split(',', StringSplitOptions.TrimEntries).Select(t =>
                int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out int b) && b > 0 ? b : throw new CliUsageException($"--batch: '{t}' is not a positive batch size (e.g. --batch 1,8,100)")).Distinct().ToArray();
            string hpDir = pr.GetValue(hparamsDir) ?? folder;
            string dataPath = pr.GetValue(dataset) ?? Path.Combine(folder, "requests.json");
            if (!File.Exists(dataPath)) throw new FileNotFoundException($"--dataset: file '{dataPath}' not found (give --dataset FILE.json)", dataPath);

            // the methods and their hparams first: one-line errors before any model is loaded
            var plan = new List<EditMethod>();
            using (var ms = ModelSession.Open(folder))
            {
                int[]? layers = pr.GetValue(layer) is { } lt ? EditingErrors.ParseLayers(lt, ms.Config.Layers, "--layers") : null;
                foreach (var name in pr.GetValue(methods)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                {
                    var kind = Editors.All.FirstOrDefault(k => string.Equals(k.Name, name, StringComparison.OrdinalIgnoreCase))
                        ?? throw new CliUsageException($"--methods: '{name}' is not a method (expected {Editors.Names})");
                    string file = Path.Combine(hpDir, kind.Name + ".json");
                    bool hasFile = File.Exists(file);
                    if (!hasFile && layers is null && !kind.Has(EditorCapabilities.ChoosesLayer))
                        throw new CliUsageException($"--methods {kind.Name}: no hparams file {file}; give --hparams-dir DIR with {kind.Name}.json, or --layers");
                    var em = EditMethod.Parse(kind.Name, hasFile ? file : null, kind.Has(EditorCapabilities.ChoosesLayer) ? null : layers, io.Err);
                    foreach (int l in em.Layers)
                        if (l < 0 || l >= ms.Config.Layers) throw new CliUsageException($"{kind.Name}: layer {l} is outside the model's layers 0..{ms.Config.Layers - 1}");
                    plan.Add(em);
                }
            }
            if (plan.Count == 0) throw new CliUsageException("--methods: give at least one method");
            string? corpusSpec = pr.GetValue(corpus) ?? (File.Exists(Path.Combine(folder, "corpus.txt")) ? Path.Combine(folder, "corpus.txt") : null);
            if (plan.Any(p => p.NeedsStats) && corpusSpec is null)
                throw new CliUsageException($"{string.Join(", ", plan.Where(p => p.NeedsStats).Select(p => p.Name))} need the key statistics: give --stats-corpus FILE|facts:PATH");
            int maxBatch = sizes.Max();
            var requests = DatasetReader.Load(dataPath, Math.Max(n, maxBatch));
            if (requests.Count < Math.Max(n, maxBatch)) throw new CliUsageException($"--edits {n} / --batch {maxBatch}: {dataPath} has only {requests.Count} requests");

            string load0 = LoadAverage();
            using var lm = LoadedModel.Open(folder, dev);
            // key statistics: computed once, fresh (not from a cache), for every layer a method reads
            var statLayers = plan.Where(p => p.NeedsStats).SelectMany(p => p.Layers).Distinct().Order().ToArray();
            IReadOnlyDictionary<int, KeyStatistics> stats = new Dictionary<int, KeyStatistics>();
            double statsSeconds = 0; long statsTokens = 0;
            if (statLayers.Length > 0)
            {
                string tmp = Directory.CreateTempSubdirectory("palimpsest-bench-stats-").FullName;
                try
                {
                    var c = KeyStatsOptions.Load(corpusSpec!, lm);
                    statsTokens = Math.Min(pr.GetValue(limitTokens) ?? long.MaxValue, c.TokenCount);
                    var sw = Stopwatch.StartNew();
                    stats = KeyStatsOptions.GetOrCompute(lm, c, statLayers, tmp, pr.GetValue(limitTokens), io);
                    statsSeconds = sw.Elapsed.TotalSeconds;
                }
                finally { Directory.Delete(tmp, recursive: true); }
                io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"key statistics  layers [{string.Join(",", statLayers)}]  {statsTokens:N0} tokens  {statsSeconds:0.00} s (once, not in the rates)"));
            }

            var original = Enumerable.Range(0, lm.Config.Layers).Select(l => lm.Model.DownProjection(l)).ToArray();
            void Restore()
            {
                for (int l = 0; l < original.Length; l++) lm.Model.SetDownProjection(l, original[l]);
                lm.Tf.Adaptor = null;
            }
            var rows = new List<JsonObject>();
            foreach (var em in plan)
                foreach (int b in sizes)
                {
                    if (!em.Batched && b != 1) continue;
                    int batchesTimed = Math.Max(1, n / b), edited = batchesTimed * b;
                    IEditor Make() => em.Create(lm, l => stats[l].Matrix, anchorPool: requests);
                    // one-time preparation (templates, C's factors, anchors), then an untimed warm-up batch
                    var sw = Stopwatch.StartNew();
                    var warm = Make();
                    (warm as IPreparedEditor)?.Prepare(lm.Tf);
                    double prepare = sw.Elapsed.TotalSeconds;
                    Apply(lm, warm, requests.Take(b).ToList()); // the weights are restored after it
                    Restore();
                    var editor = Make();
                    (editor as IPreparedEditor)?.Prepare(lm.Tf);
                    var phases = new PhaseTimes();
                    editor.Phases = phases;
                    double apply = 0;
                    sw.Restart();
                    for (int i = 0; i < batchesTimed; i++) apply += Apply(lm, editor, requests.Skip(i * b).Take(b).ToList());
                    double total = sw.Elapsed.TotalSeconds;
                    Restore();
                    double rate = edited / total;
                    var times = Phases.ToDictionary(p => p, p => phases[p].TotalSeconds);
                    double other = Math.Max(0, total - times.Values.Sum() - apply);
                    var row = new JsonObject
                    {
                        ["method"] = em.Name, ["batch"] = b, ["edits"] = edited, ["seconds"] = total, ["edits_per_second"] = rate,
                        ["prepare_seconds"] = prepare, ["keys_seconds"] = times["keys"], ["values_seconds"] = times["values"], ["solve_seconds"] = times["solve"],
                        ["apply_seconds"] = apply, ["other_seconds"] = other,
                    };
                    rows.Add(row);
                    io.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{em.Name,-10} batch {b,-4} {edited,5} edits  {total,8:0.000} s  (prepare {prepare:0.00} s; keys {times["keys"]:0.000}, values {times["values"]:0.000}, solve {times["solve"]:0.000}, apply {apply:0.000}, other {other:0.000} s)  {rate:0.0} edits/s"));
                }
            string load1 = LoadAverage();
            if (pr.GetValue(outDir) is { } dir) Write(dir, folder, dev, lm.Backend.Name, dataPath, statLayers, statsTokens, statsSeconds, rows, load0, load1);
            return CliErrors.Ok;
        }));
        return cmd;
    }

    // one batch: its deltas computed and applied (an adaptor editor has changed its adaptor already); returns the apply time
    private static double Apply(LoadedModel lm, IEditor editor, IReadOnlyList<EditRequest> batch)
    {
        var deltas = editor.ComputeDeltas(lm.Tf, batch);
        var sw = Stopwatch.StartNew();
        foreach (var d in deltas) lm.Model.ApplyDelta(d);
        editor.AfterApply(lm.Tf, batch);
        return sw.Elapsed.TotalSeconds;
    }

    private static string LoadAverage()
    {
        try { return string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)); }
        catch (IOException) { return "unknown"; }
        catch (UnauthorizedAccessException) { return "unknown"; }
    }

    private static string CpuModel()
    {
        try { return File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown"; }
        catch (IOException) { return "unknown"; }
    }

    private static void Write(string dir, string model, DeviceChoice dev, string backend, string dataset, int[] statLayers, long statsTokens, double statsSeconds,
        List<JsonObject> rows, string load0, string load1)
    {
        Directory.CreateDirectory(dir);
        string date = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'", CultureInfo.InvariantCulture);
        string machine = $"{Environment.MachineName}, {Environment.ProcessorCount} cores ({CpuModel()}), {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}";
        var json = new JsonObject
        {
            ["date"] = date, ["machine"] = machine, ["device"] = dev.ToString(), ["backend"] = backend, ["model"] = Path.GetFullPath(model),
            ["dataset"] = Path.GetFullPath(dataset), ["load_before"] = load0, ["load_after"] = load1,
            ["key_statistics"] = new JsonObject { ["layers"] = new JsonArray(statLayers.Select(l => (JsonNode)l).ToArray()), ["tokens"] = statsTokens, ["seconds"] = statsSeconds },
            ["runs"] = new JsonArray(rows.Select(r => (JsonNode)r.DeepClone()).ToArray()),
        };
        AtomicFile.WriteAllText(Path.Combine(dir, "bench-edits.json"), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        static string F(JsonNode? x, string fmt) => ((double)x!).ToString(fmt, CultureInfo.InvariantCulture);
        var md = new List<string>
        {
            $"# Edit throughput: {Path.GetFileName(Path.GetFullPath(model))}",
            "",
            $"{date}; {machine}; device {dev} ({backend}); load average {load0} before, {load1} after.",
            statLayers.Length == 0 ? "" : string.Create(CultureInfo.InvariantCulture, $"Key statistics of layers [{string.Join(", ", statLayers)}] over {statsTokens:N0} tokens: {statsSeconds:0.00} s, once (not in the rates)."),
            "",
            "| method | batch | edits | edits/s | total s | prepare s (once) | keys s | values s | solve s | apply s | other s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        };
        md.AddRange(rows.Select(r => $"| {r["method"]} | {r["batch"]} | {r["edits"]} | {F(r["edits_per_second"], "0.0")} | {F(r["seconds"], "0.000")} | {F(r["prepare_seconds"], "0.00")} | "
            + $"{F(r["keys_seconds"], "0.000")} | {F(r["values_seconds"], "0.000")} | {F(r["solve_seconds"], "0.000")} | {F(r["apply_seconds"], "0.000")} | {F(r["other_seconds"], "0.000")} |"));
        AtomicFile.WriteAllText(Path.Combine(dir, "bench-edits.md"), string.Join('\n', md) + "\n");
    }
}
