using System.CommandLine;
using System.Globalization;

namespace Palimpsest.Cli.Commands;

/// <summary>`palimpsest predict MODEL "prompt" [--top 5]`: the most probable next tokens after the prompt.</summary>
internal static class PredictCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var prompt = CommonOptions.Prompt();
        var ids = CommonOptions.Ids();
        var f64 = CommonOptions.F64();
        var device = CommonOptions.Device();
        var top = new Option<int>("--top") { Description = "how many tokens to list", DefaultValueFactory = _ => 5 };
        var cmd = new Command("predict", "table of the most probable next tokens") { model, prompt, ids, top, f64, device };
        cmd.SetAction(pr =>
        {
            int k = CommonOptions.Positive(pr.GetValue(top), "--top");
            using var s = ModelSession.Open(pr.GetValue(model)!, pr.GetValue(f64), pr.GetValue(device)!);
            int[] input = s.ResolveInput(pr.GetValue(prompt), pr.GetValue(ids));
            double[] logits = s.Engine.LastLogits(input);
            var rows = NextToken.Top(logits, Math.Min(k, logits.Length));

            string shown = pr.GetValue(prompt) is { } p ? TokenText.Quote(p) : "--ids " + string.Join(",", input);
            io.Out.WriteLine($"{shown} ({input.Length} tokens, {s.Engine.BackendName})");
            var table = new TextTable(("rank", true), ("token", false), ("id", true), ("prob", true), ("logit", true));
            for (int r = 0; r < rows.Length; r++)
            {
                var (id, prob, logit) = rows[r];
                table.Add(I(r + 1), TokenLabel(s, id), I(id), Prob(prob), logit.ToString("0.000", CultureInfo.InvariantCulture));
            }
            table.WriteTo(io.Out);
            return CliErrors.Ok;
        });
        return cmd;
    }

    private static string I(int x) => x.ToString(CultureInfo.InvariantCulture);

    /// <summary>Four decimals, or two significant digits in exponent form when that would show 0.0000.</summary>
    internal static string Prob(double p) => p >= 5e-5 || p == 0
        ? p.ToString("0.0000", CultureInfo.InvariantCulture)
        : p.ToString("0.0e+00", CultureInfo.InvariantCulture);

    /// <summary>The token's text, or just its id when the model has no usable tokenizer (predict --ids on a bare checkpoint).</summary>
    internal static string TokenLabel(ModelSession s, int id)
    {
        try { return TokenText.Quote(s.Tokenizer.Decode([id])); }
        catch (Palimpsest.Models.ModelFormatException) { return "#" + id.ToString(CultureInfo.InvariantCulture); }
    }
}

/// <summary>Softmax and ranking of one position's logits.</summary>
internal static class NextToken
{
    /// <summary>logits [V] -> the k most probable (id, probability, logit), most probable first; ties by lower id.</summary>
    public static (int Id, double Prob, double Logit)[] Top(double[] logits, int k)
    {
        double max = double.NegativeInfinity;
        foreach (double x in logits) max = Math.Max(max, x);
        double sum = 0;
        foreach (double x in logits) sum += Math.Exp(x - max);
        var order = Enumerable.Range(0, logits.Length).ToArray();
        Array.Sort(order, (a, b) => logits[b] != logits[a] ? logits[b].CompareTo(logits[a]) : a.CompareTo(b));
        var result = new (int, double, double)[k];
        for (int i = 0; i < k; i++) result[i] = (order[i], Math.Exp(logits[order[i]] - max) / sum, logits[order[i]]);
        return result;
    }
}
