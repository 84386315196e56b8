using Palimpsest.Analysis;
using Palimpsest.Editing;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Evaluation;

/// <summary>
/// One (edit, protected fact) pair: the monitor's forecast drift ||ΔW k|| (summed over the edited
/// layers) and its ratio to the edit's own change, against the measured damage: the fact's NLL of
/// its true answer before and after the edit, and whether greedy decoding still gives it.
/// </summary>
public sealed record InterferencePair(int Edit, string Fact, double Drift, double Relative, double NllBefore, double NllAfter, bool AnsweredBefore, bool AnsweredAfter)
{
    public double NllRise => NllAfter - NllBefore;
    public bool Lost => AnsweredBefore && !AnsweredAfter;
}

/// <summary>
/// How well the forecast tracks the damage over all pairs: Pearson and Spearman correlation of the
/// relative drift with the NLL rise, and the rate of lost facts among the pairs above and below a
/// relative drift of <see cref="InterferenceStudy.HighRisk"/>.
/// </summary>
public sealed record InterferenceStudyResult(IReadOnlyList<InterferencePair> Pairs, double Pearson, double Spearman,
    int HighPairs, double LostRateHigh, int LowPairs, double LostRateLow);

/// <summary>
/// The interference monitor checked against what edits do (issue 5's study, part c): each edit is
/// computed on the unedited model, forecast over the bank, applied, the bank re-scored, and undone
/// exactly, so every edit is measured alone.
/// </summary>
public static class InterferenceStudy
{
    /// <summary>Relative drift above which a pair counts as high risk (the fact moves at least half as much as the edited one).</summary>
    public const double HighRisk = 0.5;

    /// <param name="bank">Facts to watch: prompt, subject and TargetTrue (the answer the model gives).</param>
    public static InterferenceStudyResult Run(Transformer tf, ITextTokenizer tok, IEditor editor, FactProbes probes,
        IReadOnlyList<EditRequest> edits, IReadOnlyList<EditRequest> bank, IProgress<double>? progress = null)
    {
        foreach (var b in bank)
            if (string.IsNullOrWhiteSpace(b.TargetTrue)) throw new ArgumentException($"bank fact '{b.Subject}: {b.Prompt}' has no true target to score");
        var scorer = new TargetScorer(tf, tok);
        var before = bank.Select(b => scorer.Score(b.FilledPrompt, b.TargetTrue!)).ToArray();
        var keys = new Dictionary<int, IReadOnlyList<BankKey>>();
        var pairs = new List<InterferencePair>();
        for (int e = 0; e < edits.Count; e++)
        {
            var deltas = editor.ComputeDeltas(tf, [edits[e]]);
            var drift = new double[bank.Count];
            double own = 0;
            foreach (var delta in deltas)
            {
                if (!keys.TryGetValue(delta.Layer, out var k)) keys[delta.Layer] = k = InterferenceMonitor.Bank(tf, probes, bank, delta.Layer);
                var f = InterferenceMonitor.Forecast(delta, probes.KeyAt(tf, edits[e].Prompt, edits[e].Subject, delta.Layer), k, top: 0);
                own += f.OwnChange;
                for (int j = 0; j < bank.Count; j++) drift[j] += f.Drifts[j];
            }
            var restore = new List<(int Layer, double[] Old)>();
            try
            {
                foreach (var delta in deltas) restore.Add((delta.Layer, tf.Model.ApplyDelta(delta)));
                for (int j = 0; j < bank.Count; j++)
                {
                    if (bank[j].Subject == edits[e].Subject && bank[j].Prompt == edits[e].Prompt) continue; // the edited fact itself
                    var after = scorer.Score(bank[j].FilledPrompt, bank[j].TargetTrue!);
                    pairs.Add(new InterferencePair(e, $"{bank[j].Subject}: {bank[j].Prompt}", drift[j], own > 0 ? drift[j] / own : 0,
                        before[j].MeanNll, after.MeanNll, before[j].AllCorrect, after.AllCorrect));
                }
            }
            finally
            {
                for (int i = restore.Count - 1; i >= 0; i--) tf.Model.SetDownProjection(restore[i].Layer, restore[i].Old);
            }
            progress?.Report((e + 1) / (double)edits.Count);
        }
        var x = pairs.Select(p => p.Relative).ToArray();
        var y = pairs.Select(p => p.NllRise).ToArray();
        var high = pairs.Where(p => p.Relative >= HighRisk && p.AnsweredBefore).ToArray();
        var low = pairs.Where(p => p.Relative < HighRisk && p.AnsweredBefore).ToArray();
        return new InterferenceStudyResult(pairs, Pearson(x, y), Pearson(Ranks(x), Ranks(y)),
            high.Length, high.Length == 0 ? double.NaN : high.Count(p => p.Lost) / (double)high.Length,
            low.Length, low.Length == 0 ? double.NaN : low.Count(p => p.Lost) / (double)low.Length);
    }

    /// <summary>Pearson correlation of x and y (NaN with fewer than two points or no spread).</summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        int n = x.Count;
        if (n < 2 || y.Count != n) return double.NaN;
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++)
        {
            double a = x[i] - mx, b = y[i] - my;
            sxy += a * b; sxx += a * a; syy += b * b;
        }
        return sxx == 0 || syy == 0 ? double.NaN : sxy / Math.Sqrt(sxx * syy);
    }

    /// <summary>Ranks 1..n with ties given their mean rank (Spearman's convention).</summary>
    public static double[] Ranks(IReadOnlyList<double> v)
    {
        var order = Enumerable.Range(0, v.Count).OrderBy(i => v[i]).ToArray();
        var r = new double[v.Count];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && v[order[j + 1]] == v[order[i]]) j++;
            double mean = (i + j) / 2.0 + 1;
            for (int k = i; k <= j; k++) r[order[k]] = mean;
            i = j + 1;
        }
        return r;
    }
}
