using System.CommandLine;
using System.Runtime.InteropServices;

namespace Palimpsest.Cli.Commands;

/// <summary>`palimpsest generate MODEL "prompt"`: the prompt and its greedy (default) or top-k sampled continuation, printed as it is produced.</summary>
internal static class GenerateCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var prompt = CommonOptions.Prompt();
        var ids = CommonOptions.Ids();
        var f64 = CommonOptions.F64();
        var device = CommonOptions.Device();
        var weights = CommonOptions.Weights();
        var maxTokens = new Option<int>("--max-tokens") { Description = "most new tokens to produce (stops earlier at end-of-text or a full context)", DefaultValueFactory = _ => 20 };
        var topK = new Option<int>("--top-k") { Description = "sample among the k most probable tokens (0 = greedy)", DefaultValueFactory = _ => 0 };
        var temperature = new Option<double>("--temperature") { Description = "divide logits by this before top-k sampling", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<int>("--seed") { Description = "random seed for --top-k sampling", DefaultValueFactory = _ => 0 };
        var cmd = new Command("generate", "continue a prompt") { model, prompt, ids, maxTokens, topK, temperature, seed, f64, device, weights };
        cmd.SetAction(pr =>
        {
            int n = CommonOptions.Positive(pr.GetValue(maxTokens), "--max-tokens");
            int k = pr.GetValue(topK);
            if (k < 0) throw new CliUsageException($"--top-k: must be 0 (greedy) or positive (got {k})");
            double temp = pr.GetValue(temperature);
            if (!(temp > 0) || double.IsInfinity(temp)) throw new CliUsageException($"--temperature: must be positive and finite (got {temp})");

            using var s = ModelSession.Open(pr.GetValue(model)!, pr.GetValue(f64), pr.GetValue(device)!, pr.GetValue(weights)!);
            int[] input = s.ResolveInput(pr.GetValue(prompt), pr.GetValue(ids));
            var tok = TokenizerOrNull(s, fromIds: pr.GetValue(ids) is not null);
            var settings = new GenerateSettings(n, k, temp, pr.GetValue(seed), tok?.StopIds ?? []);
            if (tok is null)
            {
                // A bare checkpoint given --ids: continue it anyway and print ids, as `run` and `predict` do.
                io.Out.WriteLine(string.Join(",", input.Concat(s.Engine.Generate(input, settings))));
                return CliErrors.Ok;
            }
            var all = new List<int>(input);
            string printed = tok.Decode(input);
            // the weights load and the first token is computed before the prompt is echoed, so that
            // an error there (a file, a NaN weight) is a line of its own
            using var tokens = s.Engine.Generate(input, settings).GetEnumerator();
            bool any = tokens.MoveNext();
            io.Out.Write(printed);
            for (; any; any = tokens.MoveNext())
            {
                int next = tokens.Current;
                all.Add(next);
                // Decode everything and print what is new: a token can be half of a UTF-8 character
                // (held back while the text ends in U+FFFD), and pieces can merge across tokens.
                string text = tok.Decode(CollectionsMarshal.AsSpan(all));
                if (text.EndsWith('\uFFFD') || !text.StartsWith(printed, StringComparison.Ordinal)) continue;
                io.Out.Write(text.AsSpan(printed.Length));
                io.Out.Flush();
                printed = text;
            }
            string final = tok.Decode(CollectionsMarshal.AsSpan(all));
            // If the held-back tail never resolved, print the whole text again rather than lose any of it.
            io.Out.WriteLine(final.StartsWith(printed, StringComparison.Ordinal) ? final[printed.Length..] : "\n" + final);
            return CliErrors.Ok;
        });
        return cmd;
    }

    private static Palimpsest.Tokenization.ITextTokenizer? TokenizerOrNull(ModelSession s, bool fromIds)
    {
        try { return s.Tokenizer; }
        catch (Palimpsest.Models.ModelFormatException) when (fromIds) { return null; }
    }
}

/// <summary>How to continue a prompt: up to MaxNew tokens; TopK 0 = greedy; stops at any of Stops (the tokenizer's EOS ids).</summary>
internal sealed record GenerateSettings(int MaxNew, int TopK, double Temperature, int Seed, IReadOnlyList<int> Stops);
