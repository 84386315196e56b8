using System.CommandLine;
using System.Globalization;
using Palimpsest.Journal;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest export-lora DIR --out ADAPTER [--rank R]`: the active weight edits of an edited-model
/// folder as a PEFT LoRA adapter for the source model (see <see cref="LoraExport"/>). Exact when each
/// layer's total edit rank fits R (or no R is given); otherwise each layer is truncated to its best
/// rank-R approximation and its relative error printed. LEMoE edits change no weight and are left out (said).
/// </summary>
internal static class ExportLoraCommand
{
    public static Command Create(CliIo io)
    {
        var dir = new Argument<string>("dir") { Description = "edited-model folder (made by palimpsest edit --out)" };
        var outDir = new Option<string>("--out") { Description = "adapter folder to create (adapter_config.json, adapter_model.safetensors); must not exist or be empty", Required = true };
        var rank = new Option<int?>("--rank") { Description = "largest rank per layer (default: each layer's exact total rank); layers over it are SVD-truncated" };
        var cmd = new Command("export-lora", "write an edited folder's weight edits as a PEFT LoRA adapter (for vLLM, TGI, PEFT)") { dir, outDir, rank };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            int? r = pr.GetValue(rank);
            if (r is <= 0) throw new CliUsageException($"--rank {r}: the rank must be a positive integer");
            string target = Path.GetFullPath(pr.GetValue(outDir)!);
            if (File.Exists(target)) throw new CliUsageException($"--out {target}: exists and is a file");
            if (Directory.Exists(target) && Directory.EnumerateFileSystemEntries(target).Any())
                throw new CliUsageException($"--out {target}: folder exists and is not empty");
            using var em = EditedModel.Open(pr.GetValue(dir)!, EditCommand.WaitForFolder);
            var result = LoraExport.Export(em, target, r);
            var table = new TextTable(("layer", true), ("rank exported", true), ("total rank", true), ("relative error", true));
            foreach (var l in result.Layers)
                table.Add(l.Layer.ToString(CultureInfo.InvariantCulture), l.Rank.ToString(CultureInfo.InvariantCulture),
                    l.TotalRank.ToString(CultureInfo.InvariantCulture), l.RelativeError == 0 ? "0 (exact)" : l.RelativeError.ToString("0.0000e+00", CultureInfo.InvariantCulture));
            table.WriteTo(io.Out);
            if (result.SkippedAdaptorEdits.Count > 0)
                io.Out.WriteLine($"not included: LEMoE edit(s) {string.Join(",", result.SkippedAdaptorEdits)} (an adaptor beside the MLP, not a weight change)");
            io.Out.WriteLine($"adapter (r {result.Rank}): {result.AdapterDir}");
            return CliErrors.Ok;
        }));
        return cmd;
    }
}
