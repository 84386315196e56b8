using Palimpsest.Analysis;
using Palimpsest.Editing;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Evaluation;

/// <summary>
/// The lifelong-editing scores at one point of a stream (WilKE's metrics), all as rates in [0, 1]:
/// ES / GS / LS — each request's efficacy, paraphrase success and locality measured right after
/// its own batch was applied, averaged over the requests edited so far (LS leaves out neighbourhood
/// prompts that the stream itself has edited so far); ERS — the edits made so
/// far that still hold now; ORS — the held-out facts still answered as before; S — the harmonic
/// mean of the five. DeltaNorms[l] = ||W_n − W_0||_F of each layer's down-projection.
/// </summary>
public sealed record LifelongCheckpoint(int Edits, double ES, double GS, double LS, double ERS, double ORS, double S,
    IReadOnlyDictionary<int, double> DeltaNorms);

/// <summary>
/// The interference monitor in a lifelong run: the facts to protect (with every request applied so
/// far added as the stream goes), the editor's fact token, and an optional refusal threshold on
/// the largest forecast drift relative to the edit's own change (max ||ΔW k_j|| / ||ΔW k_e||).
/// </summary>
public sealed record LifelongMonitor(IReadOnlyList<EditRequest> Facts, FactProbes Probes, double? RefuseAbove = null);

/// <summary>One request's forecast at one edited layer: own change ||ΔW k_e||, the largest drift over the bank, their ratio, the fact moved most, and whether its batch was refused.</summary>
public sealed record MonitorEntry(int Batch, string Subject, string Target, int Layer, double OwnChange, double MaxDrift, double MaxRelative, string MostAtRisk, bool Refused);

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
    /// <param name="monitor">the interference monitor's guard (null: none): each batch's deltas are
    /// forecast against the bank before they are applied, logged in <see cref="MonitorLog"/>, and
    /// refused (not applied) when the forecast passes the threshold</param>
    /// <param name="checkpointed">called with the checkpoints so far each time one is reached (a long
    /// run's caller can save them, so a killed run keeps what it measured)</param>
    public IReadOnlyList<LifelongCheckpoint> Run(IEditor editor, IReadOnlyList<EditRequest> stream, int batch,
        IReadOnlyList<EditRequest> heldOut, Action<IReadOnlyList<EditRequest>>? afterApply = null, IProgress<double>? progress = null,
        LifelongMonitor? monitor = null, Action<IReadOnlyList<LifelongCheckpoint>>? checkpointed = null)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), "batch must be >= 1");
        var batches = stream.Chunk(batch).Select(c => (IReadOnlyList<EditRequest>)c).ToList();
        var baseW = new Dictionary<int, double[]>();
        var log = new List<MonitorEntry>();
        MonitorLog = log;
        var applied = new List<EditRequest>();
        var bank = monitor is null ? null : new MonitorBank(tf, monitor);
        int batchNo = 0;
        return RunCore(batches, heldOut, b =>
        {
            var deltas = editor.ComputeDeltas(tf, b);
            batchNo++;
            if (monitor is not null && !Guard(monitor, bank!, deltas, b, applied, batchNo, log)) return;
            applied.AddRange(b);
            foreach (var d in deltas)
            {
                bank?.Changed(d.Layer);
                if (!baseW.ContainsKey(d.Layer))
                {
                    var w = new double[tf.Model.Params.Blocks[d.Layer].WDown.Length];
                    tf.Model.Backend.ToHost(tf.Model.Params.Blocks[d.Layer].WDown, w);
                    baseW[d.Layer] = w;
                }
                tf.Model.ApplyDelta(d);
            }
            afterApply?.Invoke(b);
        }, baseW, progress, checkpointed);
    }

    /// <summary>The monitor's forecasts of the last run with a monitor, one entry per request and edited layer.</summary>
    public IReadOnlyList<MonitorEntry> MonitorLog { get; private set; } = [];

    // The forecast of one batch's deltas over the bank (the monitor's facts and the requests applied
    // so far, the batch's own left out); false when it is refused.
    private bool Guard(LifelongMonitor monitor, MonitorBank banks, IReadOnlyList<WeightDelta> deltas, IReadOnlyList<EditRequest> batch,
        IReadOnlyList<EditRequest> applied, int batchNo, List<MonitorEntry> log)
    {
        var entries = new List<MonitorEntry>();
        foreach (var d in deltas)
        {
            var bank = banks.At(d.Layer, applied);
            foreach (var r in batch)
            {
                string self = $"{r.Subject}: {r.Prompt}";
                var others = bank.Where(k => k.Name != self).ToArray();
                var f = InterferenceMonitor.Forecast(d, monitor.Probes.KeyAt(tf, r.Prompt, r.Subject, d.Layer), others, top: 1);
                entries.Add(new MonitorEntry(batchNo, r.Subject, r.TargetNew, d.Layer, f.OwnChange, f.MaxDrift, f.MaxRelative,
                    f.MostAtRisk.FirstOrDefault()?.Name ?? "", false));
            }
        }
        bool refuse = monitor.RefuseAbove is { } limit && entries.Any(e => e.MaxRelative > limit);
        log.AddRange(refuse ? entries.Select(e => e with { Refused = true }) : entries);
        return !refuse;
    }

    /// <summary>
    /// The monitor's bank keys per edited layer (its facts, then the requests applied so far), read
    /// once and extended as the stream goes: keys at layer l depend only on the layers below it, so
    /// they stay valid until a delta below l is applied (<see cref="Changed"/> drops them then).
    /// </summary>
    private sealed class MonitorBank(Transformer tf, LifelongMonitor monitor)
    {
        private readonly Dictionary<int, (int Applied, List<BankKey> Keys)> _byLayer = new();

        public IReadOnlyList<BankKey> At(int layer, IReadOnlyList<EditRequest> applied)
        {
            var (done, keys) = _byLayer.TryGetValue(layer, out var c) ? c : (0, InterferenceMonitor.Bank(tf, monitor.Probes, monitor.Facts, layer).ToList());
            if (done < applied.Count) keys.AddRange(InterferenceMonitor.Bank(tf, monitor.Probes, applied.Skip(done).ToList(), layer));
            _byLayer[layer] = (applied.Count, keys);
            return keys;
        }

        /// <summary>A delta at `layer` is about to be applied: the keys of every layer above it change.</summary>
        public void Changed(int layer)
        {
            foreach (int l in _byLayer.Keys.Where(l => l > layer).ToList()) _byLayer.Remove(l);
        }
    }

    /// <summary>
    /// The same stream for an editor that trains an adaptor beside the weights (LEMoE): batches
    /// given (planned by the caller), ‖ΔW‖ empty (the weights never change).
    /// </summary>
    public IReadOnlyList<LifelongCheckpoint> Run(IAdaptorEditor editor, IReadOnlyList<IReadOnlyList<EditRequest>> batches,
        IReadOnlyList<EditRequest> heldOut, IProgress<double>? progress = null, Action<IReadOnlyList<LifelongCheckpoint>>? checkpointed = null)
        => RunCore(batches, heldOut, b => editor.Edit(tf, b), new Dictionary<int, double[]>(), progress, checkpointed);

    private List<LifelongCheckpoint> RunCore(IReadOnlyList<IReadOnlyList<EditRequest>> batches, IReadOnlyList<EditRequest> heldOut,
        Action<IReadOnlyList<EditRequest>> apply, Dictionary<int, double[]> baseW, IProgress<double>? progress,
        Action<IReadOnlyList<LifelongCheckpoint>>? checkpointed)
    {
        var stream = batches.SelectMany(b => b).ToList();
        // the held-out facts' answers before any edit: ORS measures how many survive
        var originals = heldOut.Select(r => (r.FilledPrompt, Answer: r.TargetTrue ?? throw new ArgumentException($"held-out fact '{r.Subject}' has no true target"))).ToList();
        var keep = originals.Where(o => _probe.Answers(o.FilledPrompt, o.Answer)).ToList();
        var es = new List<double>(); var gs = new List<double>(); var ls = new List<double>();
        var result = new List<LifelongCheckpoint>();
        int next = 1;
        int start = 0;
        // the prompts the stream has asked to change so far: a neighbourhood prompt among them is
        // meant to move, so it is no test of locality (a dataset whose neighbour of record i is
        // record i+1's fact would otherwise charge a batch for its own requested edits: LS = 1/B)
        var edited = new HashSet<string>(StringComparer.Ordinal);
        foreach (var b in batches)
        {
            foreach (var r in b) edited.Add(r.FilledPrompt);
            // locality answers before this batch: the neighbourhood prompts must keep them
            var before = b.Select(r => r.NeighborhoodPrompts.Select(p => Greedy(p, r)).ToList()).ToList();
            // an editor's refusal names the edit it stopped on (a long stream is otherwise hard to resume or debug)
            try { apply(b); }
            catch (ArgumentException e)
            {
                throw new ArgumentException($"edit {start + 1}{(b.Count > 1 ? $"-{start + b.Count}" : "")} of the stream ({b[0].Subject}: {b[0].FilledPrompt} -> {b[0].TargetNew}): {e.Message}", e);
            }
            for (int i = 0; i < b.Count; i++)
            {
                var r = b[i];
                es.Add(_probe.Answers(r) ? 1 : 0);
                if (r.ParaphrasePrompts.Count > 0) gs.Add(r.ParaphrasePrompts.Average(p => _probe.Answers(p, r.TargetNew) ? 1.0 : 0.0));
                var kept = r.NeighborhoodPrompts.Select((p, j) => (p, j)).Where(x => !edited.Contains(x.p)).Select(x => Greedy(x.p, r) == before[i][x.j] ? 1.0 : 0.0).ToList();
                if (kept.Count > 0) ls.Add(kept.Average());
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
                checkpointed?.Invoke(result.AsReadOnly());
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
