using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Evaluation;

/// <summary>
/// A target's teacher-forced score after a prompt: LogProbs[j] = log p(target_j | prompt, target_&lt;j),
/// Correct[j] = target_j is the argmax there (ties: lowest id, as greedy generation picks).
/// </summary>
public sealed record TargetScore(double[] LogProbs, bool[] Correct)
{
    /// <summary>Mean per-token negative log-likelihood (ROME's test_batch_prediction number).</summary>
    public double MeanNll => -LogProbs.Average();
    /// <summary>exp(−MeanNll): the per-token geometric-mean probability ROME's magnitudes use.</summary>
    public double MeanProb => Math.Exp(-MeanNll);
    /// <summary>Every target token is the argmax: greedy decoding from the prompt yields the whole target.</summary>
    public bool AllCorrect => Correct.All(c => c);
    /// <summary>Fraction of target tokens that are the argmax (zsRE's token accuracy).</summary>
    public double TokenAccuracy => Correct.Count(c => c) / (double)Correct.Length;
}

/// <summary>
/// Scores targets teacher-forced: ids(prompt) ++ ids(" " + target) without its last token, logits
/// only for the rows that predict target tokens (ForwardOptions.LogitsFrom), so a 50k-vocabulary
/// head costs one row per target token. Several targets after one prompt share the prompt's forward
/// through the KV cache (the prompt's last row predicts every target's first token), which halves
/// the head's work for CounterFact's single-token new/true pairs. Prompt and target are tokenised apart,
/// as the shared fact models were trained; ROME tokenises "{prompt} {target}" whole, which for
/// byte-level BPE gives the same ids since the target starts a new space-led word.
/// </summary>
public sealed class TargetScorer
{
    private readonly Transformer _model;
    private readonly ITextTokenizer _tok;
    private double[] _logits = [];

    public TargetScorer(Transformer model, ITextTokenizer tok) { _model = model; _tok = tok; }

    public Transformer Model => _model;
    public ITextTokenizer Tokenizer => _tok;

    /// <summary>Scores " " + target after prompt (the target is given without its leading space).</summary>
    public TargetScore Score(string prompt, string target)
    {
        var p = _tok.EncodePrompt(prompt);
        var t = _tok.Encode(" " + target.TrimStart());
        if (p.Length == 0) throw new ArgumentException($"prompt \"{prompt}\" encodes to no tokens");
        if (t.Length == 0) throw new ArgumentException($"target \"{target}\" encodes to no tokens");
        return Score(p, t);
    }

    /// <summary>Scores each of <paramref name="targets"/> (without leading spaces) after the same prompt.</summary>
    public IReadOnlyList<TargetScore> Score(string prompt, IReadOnlyList<string> targets)
    {
        var p = _tok.EncodePrompt(prompt);
        if (p.Length == 0) throw new ArgumentException($"prompt \"{prompt}\" encodes to no tokens");
        var t = targets.Select(x => _tok.Encode(" " + x.TrimStart())).ToArray();
        for (int i = 0; i < t.Length; i++)
            if (t[i].Length == 0) throw new ArgumentException($"target \"{targets[i]}\" encodes to no tokens");
        return Score(p, t);
    }

    // prompt [P], targets [n][T_i]: the prompt once through the cache (last row: every target's first
    // token), then for each target its first T_i − 1 tokens continuing from the prompt's cache.
    public IReadOnlyList<TargetScore> Score(int[] prompt, IReadOnlyList<int[]> targets)
    {
        if (targets.Count == 1) return [Score(prompt, targets[0])];
        int P = prompt.Length, V = _model.Model.Config.Vocab;
        if (P == 0 || targets.Any(t => t.Length == 0)) throw new ArgumentException("prompt and targets must each have at least one token");
        int longest = targets.Max(t => t.Length);
        int need = P + longest - 1;
        if (need > _model.Model.Config.MaxPositions)
            throw new ArgumentException($"prompt ({P} tokens) + target ({longest} tokens) is longer than the model's context ({_model.Model.Config.MaxPositions})");
        // a sliding layer keeps the rows before a target's tokens, so the cache rewinds to the prompt
        using var cache = new KvCache(_model.Model, need, slack: Math.Max(1, longest - 1));
        var first = new double[V];
        using (var r = _model.Forward(prompt, new ForwardOptions { LogitsFrom = -1 }, cache))
            _model.Model.Backend.ToHost(r.Logits, first);
        var scores = new List<TargetScore>(targets.Count);
        foreach (var t in targets)
        {
            int T = t.Length;
            if (_logits.Length < T * V) _logits = new double[T * V];
            var rows = _logits.AsSpan(0, T * V);
            first.CopyTo(rows);
            if (T > 1)
            {
                cache.Truncate(P); // forget the previous target's tokens
                using var r = _model.Forward(t.AsSpan(0, T - 1), null, cache);
                _model.Model.Backend.ToHost(r.Logits, rows[V..]);
            }
            scores.Add(FromRows(rows, t));
        }
        return scores;
    }

    // prompt [P], target [T] -> forward over P + T − 1 tokens, logits rows [P − 1, P + T − 1) = [T, V]
    public TargetScore Score(ReadOnlySpan<int> prompt, ReadOnlySpan<int> target)
    {
        int P = prompt.Length, T = target.Length, V = _model.Model.Config.Vocab;
        if (P == 0 || T == 0) throw new ArgumentException("prompt and target must each have at least one token");
        var ids = new int[P + T - 1];
        prompt.CopyTo(ids);
        target[..^1].CopyTo(ids.AsSpan(P));
        using var r = _model.Forward(ids, new ForwardOptions { LogitsFrom = P - 1 });
        if (_logits.Length < T * V) _logits = new double[T * V];
        var rows = _logits.AsSpan(0, T * V);
        _model.Model.Backend.ToHost(r.Logits, rows);
        return FromRows(rows, target);
    }

    // rows [T, V]: row j predicts target[j]
    private static TargetScore FromRows(ReadOnlySpan<double> rows, ReadOnlySpan<int> target)
    {
        int T = target.Length, V = rows.Length / T;
        var logProbs = new double[T];
        var correct = new bool[T];
        for (int j = 0; j < T; j++)
        {
            var row = rows.Slice(j * V, V);
            logProbs[j] = LogSoftmaxAt(row, target[j]);
            correct[j] = Generator.ArgMax(row) == target[j];
        }
        return new TargetScore(logProbs, correct);
    }

    // log softmax(row)[id], computed stably in float64
    internal static double LogSoftmaxAt(ReadOnlySpan<double> row, int id)
    {
        double max = double.NegativeInfinity;
        foreach (var x in row) if (x > max) max = x;
        double sum = 0;
        foreach (var x in row) sum += Math.Exp(x - max);
        return row[id] - max - Math.Log(sum);
    }
}
