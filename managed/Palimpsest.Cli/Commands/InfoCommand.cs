using System.CommandLine;
using System.Globalization;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Cli.Commands;

/// <summary>`palimpsest info MODEL`: what the engine reads from a checkpoint folder, without running it.</summary>
internal static class InfoCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var check = new Option<bool>("--check") { Description = "read every weight and name the tensors holding NaN or ±∞ (exit 3 when there are any)" };
        var weights = CommonOptions.Weights();
        var cmd = new Command("info", "show a model's architecture, sizes, weights and tokenizer") { model, check, weights };
        cmd.SetAction(pr =>
        {
            using var s = ModelSession.Open(pr.GetValue(model)!, weights: pr.GetValue(weights)!);
            Print(s, io);
            return pr.GetValue(check) ? Check(s.Folder, io) : CliErrors.Ok;
        });
        return cmd;
    }

    /// <summary>Exit code of --check when a tensor holds NaN or ±∞.</summary>
    public const int NonFiniteWeights = 3;

    // every floating-point tensor read in float64 (fp16/bf16 ±∞ and NaN survive the widening)
    private static int Check(string folder, CliIo io)
    {
        using var set = SafetensorsSet.OpenFolder(folder);
        int tensors = 0;
        var bad = new List<string>();
        foreach (var name in set.Names.Order(StringComparer.Ordinal))
        {
            var info = set.Info(name);
            if (info.DType is not ("F64" or "F32" or "F16" or "BF16")) continue;
            tensors++;
            var v = set.ReadF64(name);
            int nan = 0, inf = 0;
            foreach (double x in v) { if (double.IsNaN(x)) nan++; else if (double.IsInfinity(x)) inf++; }
            if (nan + inf > 0) bad.Add($"{name}: {nan:N0} NaN, {inf:N0} ±∞ of {v.Length:N0} values");
        }
        if (bad.Count == 0)
        {
            io.Out.WriteLine($"check         every value of the {tensors} floating-point tensors is finite");
            return CliErrors.Ok;
        }
        io.Out.WriteLine($"check         {bad.Count} of {tensors} tensors hold values that are not finite:");
        foreach (var b in bad) io.Out.WriteLine($"  {b}");
        return NonFiniteWeights;
    }

    private static void Print(ModelSession s, CliIo io)
    {
        var c = s.Config;
        var rows = new List<(string, string)>
        {
            ("model", s.Folder),
            ("model_type", $"{c.ModelType} ({c.Arch})"),
            ("layers", I(c.Layers)),
            ("d_model", I(c.DModel)),
            ("heads", c.KvHeads == c.Heads ? $"{c.Heads} (head_dim {c.HeadDim})" : $"{c.Heads}, {c.KvHeads} key/value heads (head_dim {c.HeadDim})"),
            ("d_ff", I(c.DFf) + (c.GatedMlp ? " (gated, SwiGLU)" : "")),
            ("vocab", I(c.Vocab)),
            ("context", I(c.MaxPositions) + (c.SlidingWindow is int window ? $" (sliding_window {I(window)} on {SlidingLayers(c)})" : "")),
            ("attention biases", c.QkvBias ? (c.AttnOutBias ? "q, k, v, o" : "q, k, v") : c.AttnOutBias ? "o" : "none"),
            ("norm", $"{c.Norm} (eps {c.NormEps.ToString("g", CultureInfo.InvariantCulture)})"),
            ("activation", c.GatedMlp ? "SiLU (SwiGLU)" : c.Act.ToString()),
            ("positions", c.LearnedPositions ? "learned" : $"rotary on {c.RotaryDim} of {c.HeadDim} dims ({(c.RotaryInterleaved ? "interleaved pairs" : "half split")}, theta {c.RopeTheta.ToString("g", CultureInfo.InvariantCulture)}{Scaling(c.RopeScaling)})"),
            ("residual", c.ParallelResidual ? (c.SharedNorm ? "parallel attention + MLP, one shared norm" : "parallel attention + MLP") : "sequential"),
            ("lm_head", c.TiedHead ? "tied to the token embedding" : "separate" + (c.HeadBias ? ", with bias" : "")),
            ("eos_token_id", c.EosTokenId?.ToString(CultureInfo.InvariantCulture) ?? "none"),
        };
        rows.AddRange(EngineInfo.Weights(s));
        rows.Add(("tokenizer", TokenizerLine(s)));
        if (c.UnrecognisedFields.Count > 0)
            rows.Add(("unrecognised", $"config.json fields this engine does not read: {string.Join(", ", c.UnrecognisedFields)} (tell us if one changes the computation)"));

        // Plain "key  value" lines: greppable, and long values (paths, tokenizer notes) never wrap.
        int w = rows.Max(r => r.Item1.Length) + 2;
        foreach (var (k, v) in rows) io.Out.WriteLine(k.PadRight(w) + v);
    }

    private static string TokenizerLine(ModelSession s)
    {
        // A model without a usable tokenizer still has an architecture to show: report, don't fail.
        try
        {
            var tok = s.Tokenizer;
            // Whether prompts start with BOS changes every id after it: say so where the files ask for one.
            return tok.AddsBos ? $"{tok.Source}; prompts start with BOS {tok.BosId}" : tok.Source;
        }
        catch (ModelFormatException e) { return "none usable: " + CliErrors.OneLine(e.Message); }
    }

    private static string I(int x) => x.ToString("N0", CultureInfo.InvariantCulture);

    // "every layer", or the sliding layers as ranges: "layers 20-27", "layers 1, 3, 5"
    private static string SlidingLayers(ModelConfig c)
    {
        if (c.SlidingLayers is not { } sliding) return "every layer";
        var ranges = new List<string>();
        for (int l = 0; l < sliding.Count; l++)
        {
            if (!sliding[l]) continue;
            int end = l;
            while (end + 1 < sliding.Count && sliding[end + 1]) end++;
            ranges.Add(end == l ? $"{l}" : $"{l}-{end}");
            l = end;
        }
        return (ranges.Count == 1 && !ranges[0].Contains('-') ? "layer " : "layers ") + string.Join(", ", ranges);
    }

    private static string Scaling(RopeScaling? s) => s switch
    {
        null => "",
        { Type: RopeScaling.Llama3Type } => FormattableString.Invariant($", llama3 scaling: factor {s.Factor}, low/high frequency factors {s.LowFreqFactor}/{s.HighFreqFactor}, original context {s.OriginalMaxPositions}"),
        _ => FormattableString.Invariant($", {s.Type} scaling: factor {s.Factor}"),
    };
}
