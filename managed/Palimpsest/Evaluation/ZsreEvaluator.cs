using Palimpsest.Editing;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Evaluation;

/// <summary>
/// One zsRE request's teacher-forced token accuracies: of " target_new" after the question
/// (efficacy) and after each rephrasing (generalisation), and of " loc_ans" after "loc?"
/// (specificity), each the fraction of target tokens that are the argmax. NaN where a set is empty.
/// </summary>
public sealed record ZsreCase(string? CaseId, double Efficacy, double Generalization, double Specificity);

public sealed record ZsreSummary(int Cases, double Efficacy, double Generalization, double Specificity);

/// <summary>
/// zsRE evaluation as kmeng01/rome experiments/py/eval_utils_zsre.py: ROME feeds prompt +
/// decode(target[:i]) and checks the argmax against target[i], i.e. teacher forcing, done here in one
/// forward per prompt. Per case, the accuracy is the mean over all (prompt, token) pairs of the set.
/// </summary>
public sealed class ZsreEvaluator
{
    private readonly TargetScorer _scorer;

    public ZsreEvaluator(Transformer model, ITextTokenizer tok) { _scorer = new TargetScorer(model, tok); }

    public ZsreCase Evaluate(EditRequest r)
    {
        double Acc(IEnumerable<string> prompts, string? target)
        {
            if (target is null) return double.NaN;
            int n = 0, ok = 0;
            foreach (var p in prompts)
            {
                var s = _scorer.Score(p, target);
                n += s.Correct.Length;
                ok += s.Correct.Count(c => c);
            }
            return n == 0 ? double.NaN : ok / (double)n;
        }
        return new ZsreCase(r.CaseId,
            Acc([r.FilledPrompt], r.TargetNew),
            Acc(r.ParaphrasePrompts, r.TargetNew),
            Acc(r.NeighborhoodPrompts, r.NeighborhoodAnswer));
    }

    public static ZsreSummary Summarize(IReadOnlyList<ZsreCase> cases)
    {
        static double Mean(IEnumerable<double> xs)
        {
            var v = xs.Where(x => !double.IsNaN(x)).ToArray();
            return v.Length == 0 ? double.NaN : v.Average();
        }
        return new ZsreSummary(cases.Count, Mean(cases.Select(c => c.Efficacy)),
            Mean(cases.Select(c => c.Generalization)), Mean(cases.Select(c => c.Specificity)));
    }
}
