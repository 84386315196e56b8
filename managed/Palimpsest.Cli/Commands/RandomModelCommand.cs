using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Palimpsest.Models;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest random-model --config CONFIG.json --out DIR`: a Hugging Face folder with random
/// weights of a config's exact shapes (e.g. bench/configs/llama3-8b-shapes), written as a stream
/// (a few MB of memory whatever the size), for benchmarks at real sizes without downloading weights.
/// </summary>
internal static class RandomModelCommand
{
    public static Command Create(CliIo io)
    {
        var config = new Option<string>("--config") { Description = "a Hugging Face config.json (copied into the folder)", Required = true };
        var outDir = new Option<string>("--out") { Description = "the folder to write (config.json + model.safetensors)", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "the weights' dtype in the file", DefaultValueFactory = _ => "bf16" };
        dtype.AcceptOnlyFromAmong("bf16", "fp16", "fp32");
        var seed = new Option<int>("--seed") { Description = "random seed (the values depend on the seed and the tensor names only)", DefaultValueFactory = _ => 1 };
        var scale = new Option<double>("--scale") { Description = "standard deviation of the matrices' entries", DefaultValueFactory = _ => 0.02 };
        var cmd = new Command("random-model", "write a model folder with random weights of a config's shapes (streamed to disk)") { config, outDir, dtype, seed, scale };
        cmd.SetAction(pr =>
        {
            string cfg = pr.GetValue(config)!, dir = pr.GetValue(outDir)!;
            if (!File.Exists(cfg)) throw new CliUsageException($"--config: {cfg} not found");
            string st = pr.GetValue(dtype) switch { "fp16" => "F16", "fp32" => "F32", _ => "BF16" };
            var c = ModelConfig.Load(cfg);
            long values = RandomCheckpoint.Tensors(c).Sum(t => t.Shape.Aggregate(1L, (a, s) => a * s));
            io.Out.WriteLine($"writing {values.ToString("N0", CultureInfo.InvariantCulture)} {st} values ({values * (st == "F32" ? 4 : 2) / (1024.0 * 1024 * 1024):0.00} GiB) to {dir}");
            var sw = Stopwatch.StartNew();
            RandomCheckpoint.Write(cfg, dir, st, pr.GetValue(seed), pr.GetValue(scale));
            io.Out.WriteLine($"done in {sw.Elapsed.TotalSeconds:0.0} s");
            return CliErrors.Ok;
        });
        return cmd;
    }
}
