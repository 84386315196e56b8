using System.Globalization;
using System.Text.RegularExpressions;
using Palimpsest.Cli.Parity;

namespace Palimpsest.Tests.Cli;

/// <summary>
/// `palimpsest parity`: our ROME/MEMIT against the official code (../shared/peers/official-memit, run
/// by bench/peers/official/run_official.py with Debian's PyTorch). The cases that need the Python
/// side skip, saying what is missing, where it is not installed; the bad-input cases run everywhere.
/// </summary>
public sealed class CliParityTests : IDisposable
{
    private readonly string _tmp = Directory.CreateTempSubdirectory("palimpsest-parity-test-").FullName;

    public void Dispose() { try { Directory.Delete(_tmp, recursive: true); } catch (IOException) { } }

    private static string Official => Path.Combine(Paths.Shared, "peers", "official-memit");
    private static string Facts => Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5");

    private static void SkipWithoutPython()
    {
        Paths.SharedOrSkip("peers/official-memit");
        if (OfficialPeer.WhyUnavailable(Official) is { } why) Assert.Skip($"the official code cannot run here: {why}");
    }

    // small but complete hparams: few templates and steps keep the case to seconds
    private static string Hparams(string dir, string method)
    {
        string path = Path.Combine(dir, method + ".json");
        File.WriteAllText(path, method == "rome"
            ? """{"layers": [1], "fact_token": "subject_last", "v_num_grad_steps": 6, "v_lr": 0.5, "v_loss_layer": 4, "v_weight_decay": 0.5, "clamp_norm_factor": 4, "kl_factor": 0.0625, "mom2_adjustment": true, "context_template_length_params": [[5, 3]]}"""
            : """{"layers": [0, 1, 2], "fact_token": "subject_last", "v_num_grad_steps": 6, "v_lr": 0.5, "v_loss_layer": 4, "v_weight_decay": 0.5, "clamp_norm_factor": 0.75, "kl_factor": 0.0625, "mom2_adjustment": true, "mom2_update_weight": 100, "context_template_length": 5}""");
        return path;
    }

    private static CliRunner.Result Parity(string dir, string method, int limit, params string[] more) =>
        CliRunner.Run(["parity", Facts, "--method", method, "--hparams", Hparams(dir, method), "--requests", Path.Combine(Facts, "requests.json"),
            "--limit", limit.ToString(CultureInfo.InvariantCulture), "--official", Official, "--cache", Path.Combine(dir, "cache"), .. more]);

    // "request 1 layer 2: dW rel diff 2.1e-06  key 1.0e-07 ..." → (quantity, value) pairs of every such line
    private static List<(string Line, string Quantity, double Value)> Values(string output)
    {
        var list = new List<(string, string, double)>();
        foreach (var line in output.Split('\n').Where(l => Regex.IsMatch(l, @"^(request \d+( layer \d+)?|batch layer \d+): ")))
        {
            string body = line[(line.IndexOf(": ", StringComparison.Ordinal) + 2)..].Replace(" rel diff", "");
            if (body.StartsWith("p(target)", StringComparison.Ordinal)) continue;
            var parts = body.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            for (int i = 0; i + 1 < parts.Length; i += 2) list.Add((line, parts[i], double.Parse(parts[i + 1], CultureInfo.InvariantCulture)));
        }
        return list;
    }

    [Fact]
    public void Rome_and_memit_deltas_equal_the_official_codes_in_float64()
    {
        SkipWithoutPython();
        foreach (var (method, limit) in new[] { ("rome", 1), ("memit", 2) })
        {
            var r = Parity(_tmp, method, limit, "--f64");
            Assert.True(r.Code == 0, r.ToString());
            var values = Values(r.Out);
            Assert.True(values.Count(v => v.Quantity == "dW") >= limit, $"expected a dW line per request\n{r}");
            // float64 on both sides: what is left is the official code's own float32 (its δ and Adam state)
            foreach (var (line, q, x) in values)
                Assert.True(x <= 1e-4, $"{method}: {q} differs by {x:e2} from the official code's: {line}\n{r}");
        }
    }

    [Fact]
    public void In_float32_the_keys_and_values_agree_before_the_solve_amplifies_rounding()
    {
        SkipWithoutPython();
        var r = Parity(_tmp, "rome", 1);
        Assert.True(r.Code == 0, r.ToString());
        var v = Values(r.Out).ToDictionary(x => x.Quantity, x => x.Value);
        // the forward's rounding (float32, another summation order): k̄ and the prompt's key within 1e-5
        Assert.True(v["k̄"] < 1e-5 && v["k_prompt"] < 1e-5, r.ToString());
        Assert.True(double.IsFinite(v["dW"]), r.ToString());
    }

    [Fact]
    public void Bad_inputs_are_one_line_naming_the_option()
    {
        string reqs = Path.Combine(Facts, "requests.json"), corpus = Path.Combine(Facts, "corpus.txt");
        CliRunner.AssertBadInput(CliRunner.Run("parity", Facts, "--method", "rome", "--hparams", Hparams(_tmp, "rome"), "--requests", reqs, "--stats-corpus", corpus, "--official", _tmp),
            "--official", "rome/compute_v.py");
        string anchored = Path.Combine(_tmp, "anchored.json");
        File.WriteAllText(anchored, """{"layers": [1], "v_loss_layer": 4, "norm_anchor": true, "nas_norm": 1.5}""");
        CliRunner.AssertBadInput(CliRunner.Run("parity", Facts, "--method", "rome", "--hparams", anchored, "--requests", reqs, "--stats-corpus", corpus, "--official", _tmp), "norm_anchor");
        string last = Path.Combine(_tmp, "last.json");
        File.WriteAllText(last, """{"layers": [0, 1], "v_loss_layer": 4, "fact_token": "last"}""");
        CliRunner.AssertBadInput(CliRunner.Run("parity", Facts, "--method", "memit", "--hparams", last, "--requests", reqs, "--stats-corpus", corpus, "--official", _tmp), "fact_token", "subject_last");
        string early = Path.Combine(_tmp, "early.json");
        File.WriteAllText(early, """{"layers": [1], "v_loss_layer": 4, "v_early_stop_loss": 0.01}""");
        CliRunner.AssertBadInput(CliRunner.Run("parity", Facts, "--method", "rome", "--hparams", early, "--requests", reqs, "--stats-corpus", corpus, "--official", _tmp), "v_early_stop_loss", "0.05");
    }
}
