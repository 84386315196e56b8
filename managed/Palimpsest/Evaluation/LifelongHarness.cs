using System.Globalization;
using System.Text.Json.Nodes;
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
    IReadOnlyDictionary<int, double> DeltaNorms)
{
    /// <summary>{"edits", "ES" … "S" (null where NaN: JSON has no NaN), "delta_norms": {"layer": norm}}, as lifelong.json and the saved state hold it.</summary>
    public JsonObject ToJson() => new()
    {
        ["edits"] = Edits, ["ES"] = Num(ES), ["GS"] = Num(GS), ["LS"] = Num(LS), ["ERS"] = Num(ERS), ["ORS"] = Num(ORS), ["S"] = Num(S),
        ["delta_norms"] = new JsonObject(DeltaNorms.OrderBy(kv => kv.Key).Select(kv => KeyValuePair.Create(kv.Key.ToString(CultureInfo.InvariantCulture), (JsonNode?)kv.Value))),
    };

    /// <summary>The checkpoint <see cref="ToJson"/> wrote; where: the file, named in the error a malformed one gives.</summary>
    public static LifelongCheckpoint FromJson(JsonObject c, string where) =>
        new(c["edits"] is JsonValue e && e.TryGetValue<int>(out int edits) ? edits : throw new ArgumentException($"{where}: a checkpoint's 'edits' is missing or not an integer"),
            Dbl(c["ES"]), Dbl(c["GS"]), Dbl(c["LS"]), Dbl(c["ERS"]), Dbl(c["ORS"]), Dbl(c["S"]),
            (c["delta_norms"] as JsonObject ?? throw new ArgumentException($"{where}: a checkpoint's 'delta_norms' is missing"))
                .ToDictionary(kv => int.Parse(kv.Key, CultureInfo.InvariantCulture), kv => (double)kv.Value!));

    // NaN (a score with nothing to average) is stored as null
    internal static JsonNode? Num(double x) => double.IsNaN(x) ? null : JsonValue.Create(x);
    internal static double Dbl(JsonNode? n) => n is null ? double.NaN : (double)n;
}

/// <summary>
/// The interference monitor in a lifelong run: the facts to protect (with every request applied so
/// far added as the stream goes), the editor's fact token, and an optional refusal threshold on
/// the largest forecast drift relative to the edit's own change (max ||ΔW k_j|| / ||ΔW k_e||).
/// MoveTo: layers a batch over the threshold may be moved to instead of being refused (an editor
/// that can edit at a given layer, <see cref="ILayerEditor"/>): its edit is computed at each, and
/// the one with the smallest forecast under the threshold is applied; over it everywhere, refused.
/// </summary>
public sealed record LifelongMonitor(IReadOnlyList<EditRequest> Facts, FactProbes Probes, double? RefuseAbove = null, IReadOnlyList<int>? MoveTo = null);

/// <summary>
/// One request's forecast at one edited layer: own change ||ΔW k_e||, the largest drift over the
/// bank, their ratio, the fact moved most; whether its batch was refused, or the layer it was moved
/// to instead (its forecast there is the entry that follows, with MovedTo null).
/// </summary>
public sealed record MonitorEntry(int Batch, string Subject, string Target, int Layer, double OwnChange, double MaxDrift, double MaxRelative, string MostAtRisk, bool Refused,
    int? MovedTo = null);

/// <summary>
/// Saving and resuming a lifelong run (ROME, MEMIT, WilKE; AlphaEdit and LEMoE with their memory:
/// <see cref="IRememberingEditor"/>), so that a stream longer
/// than a working session can span several processes and still reach the uninterrupted run's
/// checkpoints bit for bit. Run: the caller's description of the run (JSON), recorded in each state.
/// From: the state to go on from (null: from the start); the model given must be the unedited one.
/// Save: called with the state at every checkpoint, every Every edits (0: not by count), after a
/// batch that ends EveryTime or more after the last save (null: not by time; a big model's saves
/// are large, so a time bound keeps their cost in proportion) and where the run stops. StopAfter:
/// stop once this many edits of the stream are done (their state saved), e.g. to run a long stream
/// in slices.
/// </summary>
public sealed record LifelongPersistence(string Run, LifelongState? From = null, Action<LifelongState>? Save = null, int Every = 0, int? StopAfter = null,
    TimeSpan? EveryTime = null);

/// <summary>
/// Applies a stream of requests in batches and never restores: the model accumulates every edit.
/// Reports <see cref="LifelongCheckpoint"/>s at 1, 2, 4, ... edits and at the end. Success means the
/// greedy answer is the target, every token (FactProbe). Edits the model in memory; the caller
/// restores it (or uses the journal).
/// </summary>
public sealed class LifelongHarness(Transformer tf, ITextTokenizer tok)
{
    private readonly FactProbe _probe = new(tf, tok);

    /// <remarks>Each batch's deltas are applied, then the editor's <see cref="IEditor.AfterApply"/> runs (AlphaEdit's C_p;
    /// what it changes must be the editor's <see cref="IRememberingEditor"/> memory for a run to resume).</remarks>
    /// <param name="monitor">the interference monitor's guard (null: none): each batch's deltas are
    /// forecast against the bank before they are applied, logged in <see cref="MonitorLog"/>, and
    /// refused (not applied) when the forecast passes the threshold</param>
    /// <param name="checkpointed">called with the checkpoints so far each time one is reached (a long
    /// run's caller can save them, so a killed run keeps what it measured)</param>
    /// <param name="persist">saves the run's state as it goes and resumes it from a saved one (null: neither);
    /// see <see cref="LifelongPersistence"/></param>
    public IReadOnlyList<LifelongCheckpoint> Run(IEditor editor, IReadOnlyList<EditRequest> stream, int batch,
        IReadOnlyList<EditRequest> heldOut, IProgress<double>? progress = null, LifelongMonitor? monitor = null, Action<IReadOnlyList<LifelongCheckpoint>>? checkpointed = null, LifelongPersistence? persist = null)
    {
        if (batch < 1) throw new ArgumentOutOfRangeException(nameof(batch), "batch must be >= 1");
        // the monitor's bank holds keys read from the model as it was when each edit was added
        if (persist?.From is not null && monitor is not null)
            throw new ArgumentException("a lifelong run with the interference monitor cannot be resumed: its bank of keys is not saved");
        // the state the first edit derives from the model (context templates, C's factors) is
        // derived here, from the unedited weights, so that a resumed run derives the same
        (editor as IPreparedEditor)?.Prepare(tf);
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
            if (monitor is not null)
            {
                // refused: nothing applied; or moved to another layer
                var guarded = Guard(editor, monitor, bank!, deltas, b, applied, batchNo, log);
                if (guarded is null) return;
                deltas = guarded;
            }
            applied.AddRange(b);
            foreach (var d in deltas)
            {
                bank?.Changed(d.Layer);
                // the WDown before the layer's first delta is the base its drift is measured from
                baseW.TryAdd(d.Layer, tf.Model.ApplyDelta(d));
            }
            editor.AfterApply(tf, b);
        }, baseW, progress, checkpointed, persist, editor as IRememberingEditor);
    }

    /// <summary>The monitor's forecasts of the last run with a monitor, one entry per request and edited layer.</summary>
    public IReadOnlyList<MonitorEntry> MonitorLog { get; private set; } = [];

    // The batch's deltas forecast over the bank and logged: those to apply (the editor's, or its
    // edit at a MoveTo layer when those are over the threshold and that one is not), null: refused.
    private IReadOnlyList<WeightDelta>? Guard(IEditor editor, LifelongMonitor monitor, MonitorBank banks, IReadOnlyList<WeightDelta> deltas,
        IReadOnlyList<EditRequest> batch, IReadOnlyList<EditRequest> applied, int batchNo, List<MonitorEntry> log)
    {
        var entries = Forecast(monitor, banks, deltas, batch, applied, batchNo);
        if (monitor.RefuseAbove is not { } limit || entries.All(e => e.MaxRelative <= limit))
        {
            log.AddRange(entries);
            return deltas;
        }
        // over the threshold: the least damaging edit at another layer, if one is under it
        (int Layer, IReadOnlyList<WeightDelta> Deltas, List<MonitorEntry> Entries, double Worst)? best = null;
        if (monitor.MoveTo is { Count: > 0 } layers && editor is ILayerEditor mover)
            foreach (int l in layers.Where(l => deltas.All(d => d.Layer != l)))
            {
                var alt = mover.ComputeDeltasAt(tf, batch, l);
                var altEntries = Forecast(monitor, banks, alt, batch, applied, batchNo);
                double worst = altEntries.Max(e => e.MaxRelative);
                if (worst <= limit && (best is null || worst < best.Value.Worst)) best = (l, alt, altEntries, worst);
            }
        if (best is { } moved)
        {
            log.AddRange(entries.Select(e => e with { MovedTo = moved.Layer }));
            log.AddRange(moved.Entries);
            return moved.Deltas;
        }
        log.AddRange(entries.Select(e => e with { Refused = true }));
        return null;
    }

    // The forecast of one batch's deltas over the bank (the monitor's facts and the requests applied
    // so far, the batch's own left out), one entry per request and delta.
    private List<MonitorEntry> Forecast(LifelongMonitor monitor, MonitorBank banks, IReadOnlyList<WeightDelta> deltas, IReadOnlyList<EditRequest> batch,
        IReadOnlyList<EditRequest> applied, int batchNo)
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
        return entries;
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
    public IReadOnlyList<LifelongCheckpoint> RunPlanned(IEditor editor, IReadOnlyList<IReadOnlyList<EditRequest>> batches,
        IReadOnlyList<EditRequest> heldOut, IProgress<double>? progress = null, Action<IReadOnlyList<LifelongCheckpoint>>? checkpointed = null,
        LifelongPersistence? persist = null)
        => RunCore(batches, heldOut, b =>
        {
            if (editor.ComputeDeltas(tf, b).Count > 0) throw new ArgumentException($"{editor.Method} returned weight deltas: a planned stream is for an adaptor editor");
            editor.AfterApply(tf, b);
        }, new Dictionary<int, double[]>(), progress, checkpointed, persist, editor as IRememberingEditor);

    private List<LifelongCheckpoint> RunCore(IReadOnlyList<IReadOnlyList<EditRequest>> batches, IReadOnlyList<EditRequest> heldOut,
        Action<IReadOnlyList<EditRequest>> apply, Dictionary<int, double[]> baseW, IProgress<double>? progress,
        Action<IReadOnlyList<LifelongCheckpoint>>? checkpointed, LifelongPersistence? persist = null, IRememberingEditor? memory = null)
    {
        var stream = batches.SelectMany(b => b).ToList();
        // the held-out facts' answers before any edit: ORS measures how many survive
        var originals = heldOut.Select(r => (r.FilledPrompt, Answer: r.TargetTrue ?? throw new ArgumentException($"held-out fact '{r.Subject}' has no true target"))).ToList();
        var kept = Enumerable.Range(0, originals.Count).Where(i => _probe.Answers(originals[i].FilledPrompt, originals[i].Answer)).ToArray();
        var keep = kept.Select(i => originals[i]).ToList();
        var es = new List<double>(); var gs = new List<double>(); var ls = new List<double>();
        var result = new List<LifelongCheckpoint>();
        int next = 1;
        int start = 0, done0 = 0;
        // the prompts the stream has asked to change so far: a neighbourhood prompt among them is
        // meant to move, so it is no test of locality (a dataset whose neighbour of record i is
        // record i+1's fact would otherwise charge a batch for its own requested edits: LS = 1/B)
        var edited = new HashSet<string>(StringComparer.Ordinal);
        if (persist?.From is { } from)
        {
            Resume(from, batches, kept, baseW);
            if (memory is not null) memory.RestoreMemory(tf, from.EditorMemory);
            else if (from.EditorMemory.Count > 0) throw new ArgumentException("resume: the saved state holds an editor's memory, but this editor keeps none: not the same method");
            es.AddRange(from.ES); gs.AddRange(from.GS); ls.AddRange(from.LS);
            result.AddRange(from.Checkpoints);
            start = from.Edits; done0 = from.Batches;
            foreach (var r in stream.Take(start)) edited.Add(r.FilledPrompt);
            while (next <= start) next *= 2;
        }
        int sinceSave = 0;
        var lastSave = System.Diagnostics.Stopwatch.StartNew();
        for (int bi = done0; bi < batches.Count; bi++)
        {
            var b = batches[bi];
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
                var held = r.NeighborhoodPrompts.Select((p, j) => (p, j)).Where(x => !edited.Contains(x.p)).Select(x => Greedy(x.p, r) == before[i][x.j] ? 1.0 : 0.0).ToList();
                if (held.Count > 0) ls.Add(held.Average());
            }
            start += b.Count;
            int done = start;
            progress?.Report(done / (double)stream.Count);
            bool last = done == stream.Count, atCheckpoint = false;
            if (done >= next || last)
            {
                while (next <= done) next *= 2;
                double ers = stream.Take(done).Average(r => _probe.Answers(r) ? 1.0 : 0.0);
                double ors = keep.Count == 0 ? double.NaN : keep.Average(o => _probe.Answers(o.FilledPrompt, o.Answer) ? 1.0 : 0.0);
                double Mean(List<double> x) => x.Count == 0 ? double.NaN : x.Average();
                var parts = new[] { Mean(es), Mean(gs), Mean(ls), ers, ors };
                var norms = baseW.ToDictionary(kv => kv.Key, kv =>
                {
                    var w = tf.Model.DownProjection(kv.Key);
                    double s = 0;
                    for (int k = 0; k < w.Length; k++) s += (w[k] - kv.Value[k]) * (w[k] - kv.Value[k]);
                    return Math.Sqrt(s);
                });
                result.Add(new LifelongCheckpoint(done, parts[0], parts[1], parts[2], ers, ors, HarmonicMean(parts), norms));
                checkpointed?.Invoke(result.AsReadOnly());
                atCheckpoint = true;
            }
            sinceSave += b.Count;
            bool stop = persist?.StopAfter is { } limit && done >= limit && !last;
            if (persist?.Save is { } save && (stop || atCheckpoint || (persist.Every > 0 && sinceSave >= persist.Every)
                || (persist.EveryTime is { } period && lastSave.Elapsed >= period)))
            {
                sinceSave = 0;
                lastSave.Restart();
                save(new LifelongState(persist.Run, done, bi + 1, es.ToArray(), gs.ToArray(), ls.ToArray(), result.ToList(), kept,
                    baseW.Keys.ToDictionary(l => l, tf.Model.DownProjection), memory?.SaveMemory(tf) ?? new Dictionary<string, double[]>()));
            }
            if (stop) break;
        }
        return result;
    }

    // Puts the model where the saved run was: the held-out facts it answers unedited must be the
    // saved run's (else it is another model), the changed layers' unedited WDown become the drift's
    // base, and the saved WDown replace them.
    private void Resume(LifelongState from, IReadOnlyList<IReadOnlyList<EditRequest>> batches, int[] kept, Dictionary<int, double[]> baseW)
    {
        int edits = batches.Take(from.Batches).Sum(b => b.Count);
        if (from.Batches < 0 || from.Batches > batches.Count || edits != from.Edits)
            throw new ArgumentException($"resume: the saved state's {from.Edits} edits in {from.Batches} batches do not fit this stream of {batches.Sum(b => b.Count)} edits in {batches.Count} batches");
        if (!from.Kept.SequenceEqual(kept))
            throw new ArgumentException($"resume: the unedited model answers {kept.Length} of the held-out facts, the saved run's answered {from.Kept.Length} (others or other ones): not the same model or held-out facts");
        if (from.ES.Length != from.Edits) throw new ArgumentException($"resume: the saved state has {from.ES.Length} efficacy scores for {from.Edits} edits");
        var c = tf.Model.Config;
        foreach (var (l, w) in from.DownProjections.OrderBy(kv => kv.Key))
        {
            if (l < 0 || l >= c.Layers) throw new ArgumentException($"resume: the saved state changes layer {l}, outside the model's 0..{c.Layers - 1}");
            if (w.LongLength != (long)c.DFf * c.DModel) throw new ArgumentException($"resume: the saved WDown of layer {l} has {w.LongLength} values, the model's has {(long)c.DFf * c.DModel}");
            baseW[l] = tf.Model.DownProjection(l);
            tf.Model.SetDownProjection(l, w);
        }
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
        var ids = tok.EncodePrompt(prompt);
        var expected = tok.Encode(" " + (r.NeighborhoodAnswer ?? r.TargetTrue ?? r.TargetNew));
        var gen = new Generator(tf).Generate(ids, Math.Max(1, expected.Length));
        return tok.Decode(gen);
    }
}
