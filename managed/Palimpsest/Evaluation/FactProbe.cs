using Palimpsest.Editing;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Evaluation;

/// <summary>
/// "Does the model currently answer this prompt with this target?": greedy decoding from the prompt
/// reproduces every target token. Checked teacher-forced in one forward (greedy yields the target
/// exactly when each target token is the argmax given the ones before it). Reads the model's current
/// weights on every call, so it sees edits as they are applied (ERS / ORS in the lifelong harness).
/// </summary>
public sealed class FactProbe
{
    private readonly TargetScorer _scorer;

    public FactProbe(Transformer model, ITextTokenizer tok) { _scorer = new TargetScorer(model, tok); }

    public bool Answers(string prompt, string target) => _scorer.Score(prompt, target).AllCorrect;

    /// <summary>The request's filled rewriting prompt answered with <paramref name="target"/> (default: TargetNew).</summary>
    public bool Answers(EditRequest request, string? target = null) => Answers(request.FilledPrompt, target ?? request.TargetNew);

    /// <summary>Fraction of <paramref name="facts"/> (prompt, target) answered.</summary>
    public double Rate(IEnumerable<(string Prompt, string Target)> facts)
    {
        int n = 0, ok = 0;
        foreach (var (p, t) in facts) { n++; if (Answers(p, t)) ok++; }
        return n == 0 ? double.NaN : ok / (double)n;
    }
}
