using Palimpsest.Editing;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Evaluation;

/// <summary>
/// The lifelong-editing scores at one point of a stream (WilKE's metrics), all as rates in [0, 1]:
/// ES / GS / LS — each request's efficacy, paraphrase success and locality measured right after
/// its own batch was applied, averaged over the requests edited so far; ERS — the edits made so
/// far that still hold now; ORS — the held-out facts still answered as before; S — the harmonic
/// mean of the five. DeltaNorms[l] = ||W_n − W_0||_F of each layer's down-projection.
/// </summary>
public sealed record LifelongCheckpoint(int Edits, double ES, double GS, double LS, double ERS, double ORS, double S,
    IReadOnlyDictionary<int, double> DeltaNorms);

/// <summary>
/// Applies a stream of requests in batches and never restores: the model accumulates every edit.
/// Reports <see cref="LifelongCheckpoint"/>s at 1, 2, 4, ... edits and at the end. Success means the
/// greedy answer is the target, every token (FactProbe). Edits the model in memory; the caller
/// restores it (or uses the journal).
/// </summary>
public sealed class LifelongHarness(Transformer tf, ITextTokenizer tok)
{
    private readonly FactProbe _probe = new(tf, tok);

    /// <param name="afterApply">called with each batch after its deltas were applied (AlphaEdit.Remember)</param>
    public IReadOnlyList<LifelongCheckpoint> Run(IEditor editor, IReadOnlyList<EditRequest> stream, int batch,
        IReadOnlyList<EditRequest> heldOut, Action<IReadOnlyList<EditRequest>>? afterApply = null, IProgress<double>? progress = null)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), "batch must be >= 1");
        var batches = stream.Chunk(batch).Select(c => (IReadOnlyList<EditRequest>)c).ToList();
        var baseW = new Dictionary<int, double[]>();
        return RunCore(batches, heldOut, b =>
        {
            foreach (var d in editor.ComputeDeltas(tf, b))
            {
                if (!baseW.ContainsKey(d.Layer))
                {
                    var w = new double[tf.Model.Params.Blocks[d.Layer].WDown.Length];
                    tf.Model.Backend.ToHost(tf.Model.Params.Blocks[d.Layer].WDown, w);
                    baseW[d.Layer] = w;
                }
                tf.Model.ApplyDelta(d);
            }
            afterApply?.Invoke(b);
        }, baseW, progress);
    }

    /// <summary>
    /// The same stream for an editor that trains an adaptor beside the weights (LEMoE): batches
    /// given (planned by the caller), ‖ΔW‖ empty (the weights never change).
    /// </summary>
    public IReadOnlyList<LifelongCheckpoint> Run(IAdaptorEditor editor, IReadOnlyList<IReadOnlyList<EditRequest>> batches,
        IReadOnlyList<EditRequest> heldOut, IProgress<double>? progress = null)
        => RunCore(batches, heldOut, b => editor.Edit(tf, b), new Dictionary<int, double[]>(), progress);

    private List<LifelongCheckpoint> RunCore(IReadOnlyList<IReadOnlyList<EditRequest>> batches, IReadOnlyList<EditRequest> heldOut,
        Action<IReadOnlyList<EditRequest>> apply, Dictionary<int, double[]> baseW, IProgress<double>? progress)
    {
        var stream = batches.SelectMany(b => b).ToList();
        // the held-out facts' answers before any edit: ORS measures how many survive
        var originals = heldOut.Select(r => (r.FilledPrompt, Answer: r.TargetTrue ?? throw new ArgumentException($"held-out fact '{r.Subject}' has no true target"))).ToList();
        var keep = originals.Where(o => _probe.Answers(o.FilledPrompt, o.Answer)).ToList();
        var es = new List<double>(); var gs = new List<double>(); var ls = new List<double>();
        var result = new List<LifelongCheckpoint>();
        int next = 1;
        int start = 0;
        foreach (var b in batches)
        {
            // locality answers before this batch: the neighbourhood prompts must keep them
            var before = b.Select(r => r.NeighborhoodPrompts.Select(p => Greedy(p, r)).ToList()).ToList();
            apply(b);
            for (int i = 0; i < b.Count; i++)
            {
                var r = b[i];
                es.Add(_probe.Answers(r) ? 1 : 0);
                if (r.ParaphrasePrompts.Count > 0) gs.Add(r.ParaphrasePrompts.Average(p => _probe.Answers(p, r.TargetNew) ? 1.0 : 0.0));
                if (r.NeighborhoodPrompts.Count > 0)
                    ls.Add(r.NeighborhoodPrompts.Select((p, j) => Greedy(p, r) == before[i][j] ? 1.0 : 0.0).Average());
            }
            start += b.Count;
            int done = start;
            progress?.Report(done / (double)stream.Count);
            bool last = done == stream.Count;
            if (done >= next || last)
            {
                while (next <= done) next *= 2;
                double ers = stream.Take(done).Average(r => _probe.Answers(r) ? 1.0 : 0.0);
                double ors = keep.Count == 0 ? double.NaN : keep.Average(o => _probe.Answers(o.FilledPrompt, o.Answer) ? 1.0 : 0.0);
                double Mean(List<double> x) => x.Count == 0 ? double.NaN : x.Average();
                var parts = new[] { Mean(es), Mean(gs), Mean(ls), ers, ors };
                var norms = baseW.ToDictionary(kv => kv.Key, kv =>
                {
                    var w = new double[kv.Value.Length];
                    tf.Model.Backend.ToHost(tf.Model.Params.Blocks[kv.Key].WDown, w);
                    double s = 0;
                    for (int k = 0; k < w.Length; k++) s += (w[k] - kv.Value[k]) * (w[k] - kv.Value[k]);
                    return Math.Sqrt(s);
                });
                result.Add(new LifelongCheckpoint(done, parts[0], parts[1], parts[2], ers, ors, HarmonicMean(parts), norms));
            }
        }
        return result;
    }

    /// <summary>Harmonic mean of the defined parts (NaN parts — e.g. no paraphrases — are left out); 0 if any is 0.</summary>
    public static double HarmonicMean(IEnumerable<double> parts)
    {
        var x = parts.Where(p => !double.IsNaN(p)).ToList();
        if (x.Count == 0) return double.NaN;
        if (x.Any(p => p <= 0)) return 0;
        return x.Count / x.Sum(p => 1 / p);
    }

    private string Greedy(string prompt, EditRequest r)
    {
        var ids = tok.Encode(prompt);
        var expected = tok.Encode(" " + (r.NeighborhoodAnswer ?? r.TargetTrue ?? r.TargetNew));
        var gen = new Generator(tf).Generate(ids, Math.Max(1, expected.Length));
        return tok.Decode(gen);
    }
}
