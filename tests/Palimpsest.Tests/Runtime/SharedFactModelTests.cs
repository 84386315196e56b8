using System.Text.Json;
using Palimpsest.Backends.Cpu;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Runtime;

/// <summary>
/// The engine on ../shared/models (float16 GPT-2s trained on CounterFact facts): it must answer
/// the facts they were trained on. Skipped with a reason when ../shared is absent.
/// </summary>
public class SharedFactModelTests
{
    /// <summary>
    /// Greedy answer == ground_truth for >= 98% of the first 500 records (every answer token is the
    /// argmax given the prompt and the answer's earlier tokens — exactly what greedy decoding emits).
    /// </summary>
    [Fact]
    public void D256_answers_at_least_98_percent_of_the_first_500_counterfact_facts()
    {
        var dir = Paths.SharedOrSkip("models/cf5k-gpt2-d256-l6");
        var data = Paths.SharedOrSkip("datasets/counterfact/counterfact-edit.json");
        using var b = new SimdBackend();
        using var model = Model.Load(dir, b);
        var tok = TokenizerFactory.ForModel(dir, model.Config);
        var tf = new Transformer(model);
        using var doc = JsonDocument.Parse(File.ReadAllText(data));
        int correct = 0, n = 500;
        var wrong = new List<string>();
        var logits = new float[0];
        for (int i = 0; i < n; i++)
        {
            var rec = doc.RootElement[i];
            string prompt = rec.GetProperty("prompt").GetString()!, truth = rec.GetProperty("ground_truth").GetString()!;
            var p = tok.Encode(prompt);
            var a = tok.Encode(" " + truth);
            var ids = p.Concat(a).ToArray();
            using var r = tf.Forward(ids, new ForwardOptions { LogitsFrom = p.Length - 1 });
            if (logits.Length != r.Logits.Length) logits = new float[r.Logits.Length];
            b.ToHost(r.Logits, logits);
            bool ok = true;
            for (int j = 0; j < a.Length && ok; j++)
            {
                var row = logits.AsSpan(j * model.Config.Vocab, model.Config.Vocab);
                int best = 0;
                for (int v = 1; v < row.Length; v++) if (row[v] > row[best]) best = v;
                ok = best == a[j];
            }
            if (ok) correct++; else if (wrong.Count < 5) wrong.Add($"#{i} \"{prompt}\" -> \"{truth}\"");
        }
        double acc = correct / (double)n;
        TestContext.Current.TestOutputHelper?.WriteLine($"greedy accuracy {correct}/{n} = {acc:P2}");
        Assert.True(acc >= 0.98, $"greedy accuracy {acc:P1} ({correct}/{n}) < 98%; e.g. {string.Join("; ", wrong)}");
    }

    [Fact]
    public void D128_generates_French_for_Danielle_Darrieux()
    {
        var dir = Paths.SharedOrSkip("models/cf5k-gpt2-d128-l6");
        using var b = new ReferenceBackend();
        using var model = Model.Load(dir, b);
        var tok = TokenizerFactory.ForModel(dir, model.Config);
        var ids = tok.Encode("The mother tongue of Danielle Darrieux is");
        Assert.Equal([464, 2802, 11880, 286, 39808, 7491, 5034, 2821, 318], ids);
        var next = new Generator(new Transformer(model)).Generate(ids, 1);
        Assert.Equal(" French", tok.Decode(next));
    }
}
