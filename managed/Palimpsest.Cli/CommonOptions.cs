using System.CommandLine;
using System.Globalization;
using Palimpsest.Backends.Cpu;

namespace Palimpsest.Cli;

/// <summary>Arguments and options shared by the subcommands, so they read and validate the same way everywhere.</summary>
internal static class CommonOptions
{
    public static Argument<string> Model() => new("model")
    {
        Description = "model folder in Hugging Face layout (config.json + model.safetensors)",
    };

    public static Argument<string?> Prompt() => new("prompt")
    {
        Description = "text to tokenize with the model's tokenizer (or give --ids)",
        Arity = ArgumentArity.ZeroOrOne,
    };

    public static Option<string?> Ids() => new("--ids")
    {
        Description = "comma-separated token ids instead of a prompt, e.g. --ids 464,2802,11880",
    };

    public static Option<bool> F64() => new("--f64")
    {
        Description = "use the float64 reference backend (slow, exact) instead of the fast float32 one",
    };

    /// <summary>The --weights option: how the CPU backend stores a checkpoint's matrices.</summary>
    public static Option<string> Weights()
    {
        var o = new Option<string>("--weights")
        {
            Description = "on the CPU, how weight matrices are stored: auto (as the file has them: bf16/fp16 read in place from the memory map, float32 files as float32), bf16, fp16 (rounded once at load where the file differs) or f32 (every weight widened to float32)",
            DefaultValueFactory = _ => "auto",
        };
        o.AcceptOnlyFromAmong("auto", "bf16", "fp16", "f32");
        return o;
    }

    /// <summary>The --weights value as the backend's setting.</summary>
    public static CpuWeights ParseWeights(string value) => value switch
    {
        "bf16" => CpuWeights.BF16, "fp16" => CpuWeights.F16, "f32" => CpuWeights.F32, _ => CpuWeights.Auto,
    };

    public static Option<string> Device()
    {
        var o = new Option<string>("--device")
        {
            Description = "where the forward runs: cpu (float32 SIMD, or the float64 reference with --f64) or cuda (float32 on the GPU)",
            DefaultValueFactory = _ => "cpu",
        };
        o.AcceptOnlyFromAmong("cpu", "cuda");
        return o;
    }

    /// <summary>Parses "1,2, 3" into ids; anything else is a usage error naming the bad item.</summary>
    public static int[] ParseIds(string text)
    {
        var parts = text.Split(',');
        var ids = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            string p = parts[i].Trim();
            if (!int.TryParse(p, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out ids[i]))
                throw new CliUsageException($"--ids: item {i + 1} '{p}' is not an integer token id (expected e.g. --ids 1,2,3)");
            if (ids[i] < 0)
                throw new CliUsageException($"--ids: item {i + 1} is {ids[i]}; token ids are non-negative");
        }
        return ids;
    }

    public static int Positive(int value, string option) =>
        value > 0 ? value : throw new CliUsageException($"{option}: must be a positive integer (got {value})");
}
