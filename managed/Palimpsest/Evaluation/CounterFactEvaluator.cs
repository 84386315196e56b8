using Palimpsest.Editing;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Evaluation;

/// <summary>
/// One prompt's CounterFact numbers: mean per-token NLL of " target_new" and of " target_true" (for
/// neighbourhood prompts the true answer is NeighborhoodAnswer when the data gives one), and whether
/// greedy decoding yields each whole target (top-1 / exact match, teacher-forced).
/// </summary>
public sealed record PromptScores(string Prompt, double NllNew, double NllTrue, bool NewTop1, bool TrueTop1)
{
    /// <summary>P(new) > P(true) in ROME's sense: NLL(true) > NLL(new).</summary>
    public bool NewWins => NllTrue > NllNew;
    /// <summary>P(true) > P(new): NLL(new) > NLL(true).</summary>
    public bool TrueWins => NllNew > NllTrue;
    /// <summary>exp(−NLL_new) − exp(−NLL_true) (ROME's magnitude).</summary>
    public double ProbDiff => Math.Exp(-NllNew) - Math.Exp(-NllTrue);
}

/// <summary>Every scored prompt of one request.</summary>
public sealed record CounterFactCase(string? CaseId, IReadOnlyList<PromptScores> Rewrite, IReadOnlyList<PromptScores> Paraphrase,
    IReadOnlyList<PromptScores> Neighborhood);

/// <summary>
/// Dataset-level CounterFact metrics as ROME's experiments/summarize.py computes them: each number is a
/// per-case mean over that case's prompts, then a mean over cases (NaN when no case has such prompts).
/// Efficacy / Paraphrase success: P(new) > P(true); Neighborhood success: P(true) > P(new).
/// Magnitudes: P(new) − P(true) (rewrite, paraphrase), P(true) − P(new) (neighbourhood).
/// Top-1: greedy decoding yields the whole target_new (rewrite, paraphrase) / the true answer (neighbourhood).
/// Score: harmonic mean of the three successes (ROME's "S").
/// </summary>
public sealed record CounterFactSummary(int Cases,
    double EfficacySuccess, double ParaphraseSuccess, double NeighborhoodSuccess,
    double EfficacyMagnitude, double ParaphraseMagnitude, double NeighborhoodMagnitude,
    double EfficacyTop1, double ParaphraseTop1, double NeighborhoodTop1)
{
    public double Score => HarmonicMean(EfficacySuccess, ParaphraseSuccess, NeighborhoodSuccess);

    internal static double HarmonicMean(params double[] xs)
    {
        var v = xs.Where(x => !double.IsNaN(x)).ToArray();
        if (v.Length == 0) return double.NaN;
        if (v.Any(x => x <= 0)) return 0;
        return v.Length / v.Sum(x => 1 / x);
    }
}

/// <summary>
/// CounterFact evaluation as kmeng01/rome experiments/py/eval_utils_counterfact.py (with MEMIT's
/// top-1 "_correct" variant): every prompt gets one teacher-forced forward per target.
/// </summary>
public sealed class CounterFactEvaluator
{
    private readonly TargetScorer _scorer;

    public CounterFactEvaluator(Transformer model, ITextTokenizer tok) { _scorer = new TargetScorer(model, tok); }

    /// <summary>Scores the request's rewrite, paraphrase and neighbourhood prompts. Needs TargetTrue.</summary>
    public CounterFactCase Evaluate(EditRequest r)
    {
        string trueTarget = r.TargetTrue ?? throw new ArgumentException(
            $"request {r.CaseId ?? r.Subject}: CounterFact scoring compares target_new with target_true, which this request lacks");
        PromptScores Score(string prompt, string truth)
        {
            var both = _scorer.Score(prompt, [r.TargetNew, truth]);
            var (n, t) = (both[0], both[1]);
            return new PromptScores(prompt, n.MeanNll, t.MeanNll, n.AllCorrect, t.AllCorrect);
        }
        string neighborTruth = r.NeighborhoodAnswer ?? trueTarget;
        return new CounterFactCase(r.CaseId,
            [Score(r.FilledPrompt, trueTarget)],
            r.ParaphrasePrompts.Select(p => Score(p, trueTarget)).ToArray(),
            r.NeighborhoodPrompts.Select(p => Score(p, neighborTruth)).ToArray());
    }

    public IReadOnlyList<CounterFactCase> Evaluate(IEnumerable<EditRequest> requests, IProgress<double>? progress = null)
    {
        var list = requests as IReadOnlyList<EditRequest> ?? requests.ToArray();
        var cases = new List<CounterFactCase>(list.Count);
        foreach (var r in list)
        {
            cases.Add(Evaluate(r));
            progress?.Report(cases.Count / (double)list.Count);
        }
        return cases;
    }

    public static CounterFactSummary Summarize(IReadOnlyList<CounterFactCase> cases)
    {
        double M(Func<CounterFactCase, IReadOnlyList<PromptScores>> set, Func<PromptScores, double> f)
        {
            var perCase = cases.Select(set).Where(s => s.Count > 0).Select(s => s.Average(f)).ToArray();
            return perCase.Length == 0 ? double.NaN : perCase.Average();
        }
        static double B(bool b) => b ? 1 : 0;
        return new CounterFactSummary(cases.Count,
            M(c => c.Rewrite, p => B(p.NewWins)), M(c => c.Paraphrase, p => B(p.NewWins)), M(c => c.Neighborhood, p => B(p.TrueWins)),
            M(c => c.Rewrite, p => p.ProbDiff), M(c => c.Paraphrase, p => p.ProbDiff), M(c => c.Neighborhood, p => -p.ProbDiff),
            M(c => c.Rewrite, p => B(p.NewTop1)), M(c => c.Paraphrase, p => B(p.NewTop1)), M(c => c.Neighborhood, p => B(p.TrueTop1)));
    }
}
