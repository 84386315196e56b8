using System.CommandLine;
using System.Globalization;
using Palimpsest.Tensors;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest run MODEL --ids 1,2,3 [--dump OUT.safetensors] [--f64]`: one forward pass; the dump
/// holds input_ids [T], logits [T, V] and hidden_states [L+1, T, d] in transformers'
/// output_hidden_states convention, so it can be compared with a transformers run tensor by tensor.
/// </summary>
internal static class RunCommand
{
    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var prompt = CommonOptions.Prompt();
        var ids = CommonOptions.Ids();
        var f64 = CommonOptions.F64();
        var device = CommonOptions.Device();
        var dump = new Option<string?>("--dump") { Description = "write input_ids, logits and hidden_states to this .safetensors file" };
        var cmd = new Command("run", "one forward pass; optionally dump logits and hidden states") { model, prompt, ids, dump, f64, device };
        cmd.SetAction(pr =>
        {
            string? dumpPath = pr.GetValue(dump);
            if (dumpPath is not null) CheckWritable(dumpPath);
            using var s = ModelSession.Open(pr.GetValue(model)!, pr.GetValue(f64), pr.GetValue(device)!);
            int[] input = s.ResolveInput(pr.GetValue(prompt), pr.GetValue(ids));
            var (logits, hidden) = s.Engine.Full(input);
            int T = input.Length, V = s.Config.Vocab;

            // The most probable next token after the last position: a quick sanity line.
            var last = new double[V];
            for (int v = 0; v < V; v++) last[v] = logits[(long)(T - 1) * V + v];
            var (id, prob, _) = NextToken.Top(last, 1)[0];
            io.Out.WriteLine($"{T} tokens, {s.Engine.BackendName}: logits {logits.ShapeString}, hidden_states {hidden.ShapeString}");
            io.Out.WriteLine($"next token: {id} {PredictCommand.TokenLabel(s, id)} p={PredictCommand.Prob(prob)}");

            if (dumpPath is not null)
            {
                EngineDump.Write(dumpPath, input, logits, hidden);
                io.Out.WriteLine($"wrote {dumpPath}");
            }
            return CliErrors.Ok;
        });
        return cmd;
    }

    /// <summary>Fails before the forward pass, not after it, when the dump could not be written.</summary>
    private static void CheckWritable(string path)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new CliUsageException($"--dump: '{path}' is a folder; give a file name such as out.safetensors");
        string? dir = Path.GetDirectoryName(full);
        if (dir is not null && !Directory.Exists(dir)) throw new CliUsageException($"--dump: folder '{dir}' does not exist");
    }
}
