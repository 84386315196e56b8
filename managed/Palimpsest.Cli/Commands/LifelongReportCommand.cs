using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using ScottPlot;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest lifelong-report RUN_DIR... --out DIR [--title T]`: sets several `palimpsest lifelong`
/// runs side by side: one Markdown table (every checkpoint of every run) and one PNG per metric
/// (ES, GS, LS, ERS, ORS, S against the number of edits, log₂ axis, one line per run), and one of
/// the edited weights' drift ‖W_n − W_0‖_F over all layers (log₁₀): the growth Norm-Anchor Scaling
/// is about, where a stream collapses.
/// </summary>
internal static class LifelongReportCommand
{
    private static readonly string[] Metrics = ["ES", "GS", "LS", "ERS", "ORS", "S"];

    public static Command Create(CliIo io)
    {
        var runs = new Argument<string[]>("runs") { Description = "folders written by palimpsest lifelong --report", Arity = ArgumentArity.OneOrMore };
        var outDir = new Option<string>("--out") { Description = "folder for lifelong-report.md and the PNG plots", Required = true };
        var title = new Option<string?>("--title") { Description = "heading of the report" };
        var cmd = new Command("lifelong-report", "compare lifelong runs: one table and one plot per metric") { runs, outDir, title };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var loaded = new List<(string Label, JsonObject J)>();
            foreach (var dir in pr.GetValue(runs)!)
            {
                string f = Path.Combine(dir, "lifelong.json");
                if (!File.Exists(f)) throw new FileNotFoundException($"{f}: not found (run palimpsest lifelong --report {dir} first)", f);
                var j = JsonNode.Parse(File.ReadAllText(f)) as JsonObject ?? throw new CliUsageException($"{f}: expected a JSON object");
                if (j["checkpoints"] is not JsonArray) throw new CliUsageException($"{f}: field 'checkpoints' missing");
                // a run stopped part-way (lifelong saves its report at every checkpoint) says so in its label
                var last = j["checkpoints"]!.AsArray().LastOrDefault();
                bool partial = j["complete"] is JsonValue v && v.TryGetValue(out bool done) && !done;
                bool anchored = j["hparams"]?["norm_anchor"] is JsonValue na && na.TryGetValue(out bool on) && on;
                string label = $"{j["method"]}{(anchored ? " + norm anchors" : "")} (B={j["batch"]}){(partial ? $", partial: {last?["edits"]?.ToJsonString() ?? "0"} of {j["edits"]} edits" : "")}";
                loaded.Add((label, j));
            }
            // two runs of one method and batch (different hparams) are told apart by their folders
            var dirs = pr.GetValue(runs)!;
            var twice = loaded.GroupBy(r => r.Label).Where(g => g.Count() > 1).Select(g => g.Key).ToHashSet();
            for (int i = 0; i < loaded.Count; i++)
                if (twice.Contains(loaded[i].Label))
                    loaded[i] = ($"{loaded[i].Label} [{Path.GetFileName(Path.TrimEndingDirectorySeparator(dirs[i]))}]", loaded[i].J);
            string outPath = pr.GetValue(outDir)!;
            Directory.CreateDirectory(outPath);
            var md = new List<string> { $"# {pr.GetValue(title) ?? "Lifelong editing"}", "" };
            foreach (var (label, j) in loaded)
                md.Add($"- **{label}**: {j["edits"]} edits of {Path.GetFileName((string?)j["dataset"])} on {Path.GetFileName((string?)j["model"])}, {j["held_out"]} held-out facts, {Layers(j["hparams"])}");
            // a run equal to an earlier one at every checkpoint (WilKE that always picks ROME's layer)
            // would hide it in the plots: it is drawn dashed over it and said here
            var sameAs = new Dictionary<int, int>();
            for (int i = 0; i < loaded.Count; i++)
                for (int k = 0; k < i && !sameAs.ContainsKey(i); k++)
                    if (Checkpoints(loaded[i].J) == Checkpoints(loaded[k].J)) sameAs[i] = k;
            foreach (var (i, k) in sameAs)
                md.Add($"- **{loaded[i].Label}** has the values of **{loaded[k].Label}** at every checkpoint: its curves lie on them (drawn dashed).");
            md.Add("");
            md.Add("| method | edits | ES | GS | LS | ERS | ORS | S | ‖ΔW‖ (all layers) |");
            md.Add("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var (label, j) in loaded)
                foreach (var c in j["checkpoints"]!.AsArray())
                    md.Add($"| {label} | {c!["edits"]} | " + string.Join(" | ", Metrics.Select(m => F(c[m]))) + $" | {(Drift(c) is double dw ? dw.ToString("0.0", CultureInfo.InvariantCulture) : "-")} |");
            md.Add("");
            foreach (var m in Metrics)
            {
                var plot = new Plot();
                for (int i = 0; i < loaded.Count; i++)
                {
                    var (label, j) = loaded[i];
                    var pts = j["checkpoints"]!.AsArray().Where(c => c![m] is not null)
                        .Select(c => (X: Math.Log2((double)c!["edits"]!), Y: (double)c[m]!)).ToArray();
                    if (pts.Length == 0) continue;
                    var sc = plot.Add.Scatter(pts.Select(p => p.X).ToArray(), pts.Select(p => p.Y).ToArray());
                    sc.LegendText = sameAs.TryGetValue(i, out int k) ? $"{label} (= {loaded[k].Label})" : label;
                    if (sameAs.ContainsKey(i)) { sc.LinePattern = LinePattern.Dashed; sc.MarkerSize = 9; }
                }
                plot.Axes.SetLimitsY(-0.02, 1.02);
                plot.Axes.Bottom.Label.Text = "edits (log2)";
                plot.Axes.Left.Label.Text = m;
                plot.Title($"{m} against the number of edits");
                // beside the axes, not over them: the curves end at the top right as often as anywhere
                plot.ShowLegend(Edge.Right);
                string png = $"lifelong-{m}.png";
                plot.SavePng(Path.Combine(outPath, png), 860, 420);
                md.Add($"![{m}]({png})");
            }
            int plots = Metrics.Length;
            if (loaded.Any(r => r.J["checkpoints"]!.AsArray().Any(c => Drift(c) is > 0)))
            {
                var plot = new Plot();
                foreach (var (label, j) in loaded)
                {
                    var pts = j["checkpoints"]!.AsArray().Select(c => (E: (double)c!["edits"]!, D: Drift(c))).Where(p => p.D is > 0)
                        .Select(p => (X: Math.Log2(p.E), Y: Math.Log10(p.D!.Value))).ToArray();
                    if (pts.Length == 0) continue;
                    plot.Add.Scatter(pts.Select(p => p.X).ToArray(), pts.Select(p => p.Y).ToArray()).LegendText = label;
                }
                plot.Axes.Bottom.Label.Text = "edits (log2)";
                plot.Axes.Left.Label.Text = "log10 ‖W_n − W_0‖ (all edited layers)";
                plot.Title("drift of the edited weights against the number of edits");
                plot.ShowLegend(Edge.Right);
                plot.SavePng(Path.Combine(outPath, "lifelong-drift.png"), 860, 420);
                md.Add("![drift](lifelong-drift.png)");
                plots++;
            }
            File.WriteAllLines(Path.Combine(outPath, "lifelong-report.md"), md);
            io.Out.WriteLine($"wrote {Path.Combine(outPath, "lifelong-report.md")} and {plots} PNG plots");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    // WilKE's hparams carry ROME's unused "layers" (older reports) beside scanning_ceiling, the layers it chooses from
    private static string Layers(JsonNode? hp) =>
        hp?["scanning_ceiling"] is JsonNode ceiling ? $"layers scanned per edit: 0 to {(int)ceiling - 1}"
        : hp?["layers"] is JsonNode layers ? $"layers from the hparams: {layers.ToJsonString()}"
        : $"the adaptor's layer from the hparams: {hp?["layer"]?.ToJsonString()}"; // LEMoE

    // the checkpoints' edits and metrics, for comparing two runs
    private static string Checkpoints(JsonObject j) =>
        string.Join(";", j["checkpoints"]!.AsArray().Select(c => c!["edits"]!.ToJsonString() + ":" + string.Join(",", Metrics.Select(m => c[m]?.ToJsonString() ?? "null"))));

    // ‖W_n − W_0‖_F over every changed layer, from the per-layer drifts; null where the checkpoint has none (an adaptor, an older report)
    private static double? Drift(JsonNode? checkpoint) =>
        checkpoint?["delta_norms"] is JsonObject d && d.Count > 0 ? Math.Sqrt(d.Sum(kv => (double)kv.Value! * (double)kv.Value!)) : null;

    private static string F(JsonNode? x) => x is null ? "-" : ((double)x).ToString("0.000", CultureInfo.InvariantCulture);
}
