using System.CommandLine;
using System.Globalization;
using Spectre.Console;

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
        var top = new Option<int>("--top") { Description = "how many tokens to list", DefaultValueFactory = _ => 5 };
        var cmd = new Command("predict", "table of the most probable next tokens") { model, prompt, ids, top, f64 };
        cmd.SetAction(pr =>
        {
            int k = CommonOptions.Positive(pr.GetValue(top), "--top");
            using var s = ModelSession.Open(pr.GetValue(model)!, pr.GetValue(f64));
            int[] input = s.ResolveInput(pr.GetValue(prompt), pr.GetValue(ids));
            double[] logits = s.Engine.LastLogits(input);
            var rows = NextToken.Top(logits, Math.Min(k, logits.Length));

            var console = CliConsole.For(io.Out);
            string shown = pr.GetValue(prompt) is { } p ? TokenText.Quote(p) : "--ids " + string.Join(",", input);
            console.Write(new Text($"{shown} ({input.Length} tokens, {s.Engine.BackendName})\n"));
            var table = new Table().Border(TableBorder.Simple)
                .AddColumn(new TableColumn("rank").RightAligned())
                .AddColumn(new TableColumn("token"))
                .AddColumn(new TableColumn("id").RightAligned())
                .AddColumn(new TableColumn("prob").RightAligned())
                .AddColumn(new TableColumn("logit").RightAligned());
            for (int r = 0; r < rows.Length; r++)
            {
                var (id, prob, logit) = rows[r];
                table.AddRow(new Text((r + 1).ToString(CultureInfo.InvariantCulture)), new Text(TokenLabel(s, id)),
                    new Text(id.ToString(CultureInfo.InvariantCulture)), new Text(prob.ToString("0.0000", CultureInfo.InvariantCulture)),
                    new Text(logit.ToString("0.000", CultureInfo.InvariantCulture)));
            }
            console.Write(table);
            return CliErrors.Ok;
        });
        return cmd;
    }

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
