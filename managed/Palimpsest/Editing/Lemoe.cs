using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tokenization;
using Palimpsest.Training;

namespace Palimpsest.Editing;

/// <summary>
/// An editor that does not change the model's weights but trains something beside them (LEMoE's
/// adaptor). Edit installs or extends it on the Transformer; the caller records and reverts it.
/// </summary>
/// <summary>What one LEMoE edit did: AdamW steps, the batch's target NLL before and after, and
/// the share of the target rows the router sends to the new expert afterwards.</summary>
public sealed record LemoeTrace(int Expert, int Steps, double InitialNll, double FinalNll, double RoutedToNew);

/// <summary>
/// LEMoE (Wang &amp; Li, EMNLP 2024): each batch of edits adds one expert and its key to the adaptor
/// beside one MLP (<see cref="LemoeAdaptor"/>), freezes the earlier experts and keys, and trains
/// the new expert, its key and the router with AdamW on the targets' NLL (teacher-forced, rows
/// that predict a target token), plus a routing cross-entropy that anchors the new key on the
/// batch's rows (ours; the paper's KV-anchor routing learns the key by the same gradient). The
/// forward and backward run on the model's backend, with one zero intervention per row at the
/// MLP output: their gradients are dL/d(adaptor output); the adaptor's own gradients are host
/// float64. Training routes with the same top-1 rule as inference.
/// </summary>
public sealed class Lemoe(LemoeHparams hparams, ITextTokenizer tokenizer) : IEditor, IRememberingEditor
{
    public LemoeHparams Hparams { get; } = hparams;
    public string Method => "lemoe";

    /// <summary>"keys" (the batch's keys at the layer and its routing inputs) and "train" (the new expert's AdamW steps).</summary>
    public PhaseTimes? Phases { get; set; }

    /// <summary>LEMoE changes no weight: the batch trains a new expert of the adaptor it installs on the Transformer (<see cref="Edit"/>); no delta.</summary>
    public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        Edit(tf, requests);
        return [];
    }

    public string LastOutcome => LastTrace is { } t ? $"{Editors.Loss(t.InitialNll)} -> {Editors.Loss(t.FinalNll)}" : "";
    public LemoeTrace? LastTrace { get; private set; }
    /// <summary>The route of every row of the last training forward, per request (the packed sequence split back).</summary>
    public IReadOnlyList<int[]>? LastTrainingRoutes { get; private set; }

    /// <summary>The adaptor installed on tf (created on the first edit).</summary>
    public static LemoeAdaptor AdaptorOf(Transformer tf, LemoeHparams hp)
    {
        if (tf.Adaptor is LemoeAdaptor a)
        {
            if (a.Layer != hp.Layer) throw new ArgumentException($"the model's LEMoE adaptor sits at layer {a.Layer}; hparams say layer {hp.Layer}");
            return a;
        }
        if (tf.Adaptor is not null) throw new ArgumentException($"the model already has another adaptor ({tf.Adaptor.GetType().Name})");
        var created = new LemoeAdaptor(tf.Model, hp);
        tf.Adaptor = created;
        return created;
    }

    /// <summary>The adaptor on tf (none: empty) as the tensors of its file (<see cref="LemoeAdaptor.Save"/>'s names).</summary>
    public IReadOnlyDictionary<string, double[]> SaveMemory(Transformer tf)
    {
        if (tf.Adaptor is not LemoeAdaptor a) return new Dictionary<string, double[]>(StringComparer.Ordinal);
        return a.Parts().ToDictionary(p => p.Name, p => (double[])p.Values.Clone(), StringComparer.Ordinal);
    }

    /// <summary>Puts the saved router and experts into tf's adaptor (created if missing).</summary>
    public void RestoreMemory(Transformer tf, IReadOnlyDictionary<string, double[]> memory)
    {
        if (memory.Count == 0) return;
        var a = AdaptorOf(tf, Hparams);
        double[] Get(string name, long length) =>
            !memory.TryGetValue(name, out var v) ? throw new ArgumentException($"LEMoE memory: '{name}' is missing")
            : v.LongLength != length ? throw new ArgumentException($"LEMoE memory: '{name}' has {v.LongLength} values, expected {length} (other hparams)") : (double[])v.Clone();
        int n = memory.Keys.Count(k => k.EndsWith(".key", StringComparison.Ordinal) && k.StartsWith("experts.", StringComparison.Ordinal));
        var parts = a.ReadParts(n, Get);
        if (memory.Count != 2 + 5 * n) throw new ArgumentException($"LEMoE memory: {memory.Count} arrays for {n} experts (expected {2 + 5 * n})");
        a.SetParts(parts);
    }

    public void Edit(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        if (requests.Count == 0) return;
        foreach (var r in requests) r.Validate();
        var hp = Hparams;
        var adaptor = AdaptorOf(tf, hp);
        var b = tf.Model.Backend;
        int d = adaptor.DModel, f = adaptor.DFf, rank = adaptor.Rank, kd = adaptor.KeyDim;

        // the batch packed: prompt + target[:-1] per request; rows P−1+j predict target[j]
        var ids = new List<int>(); var lengths = new List<int>(); var rows = new List<int>(); var targets = new List<int>();
        foreach (var r in requests)
        {
            var prompt = tokenizer.EncodePrompt(r.FilledPrompt);
            var target = tokenizer.Encode(r.TargetNew.StartsWith(' ') ? r.TargetNew : " " + r.TargetNew);
            if (prompt.Length == 0 || target.Length == 0) throw new ArgumentException($"request '{r.Subject}': empty prompt or target after tokenisation");
            int at = ids.Count;
            ids.AddRange(prompt); ids.AddRange(target.AsSpan(0, target.Length - 1).ToArray());
            lengths.Add(prompt.Length + target.Length - 1);
            for (int j = 0; j < target.Length; j++) { rows.Add(at + prompt.Length - 1 + j); targets.Add(target[j]); }
        }
        int T = ids.Count, R = rows.Count;
        var idArr = ids.ToArray();
        // packs of whole requests, each within the model's context (a packed forward's rows count against it)
        var packs = new List<Pack>();
        for (int i = 0, at = 0, ri = 0; i < lengths.Count;)
        {
            int start = i, startRow = at, len = 0;
            while (i < lengths.Count && (len == 0 || len + lengths[i] <= tf.Model.Config.MaxPositions)) len += lengths[i++];
            var pr = new List<int>(); var pt = new List<int>();
            for (; ri < rows.Count && rows[ri] < startRow + len; ri++) { pr.Add(rows[ri] - startRow); pt.Add(targets[ri]); }
            packs.Add(new Pack(startRow, idArr[startRow..(startRow + len)], lengths.GetRange(start, i - start).ToArray(), pr.ToArray(), pt.ToArray()));
            at += len;
        }

        // keys at the layer and routing inputs: neither depends on the adaptor
        var keys = new double[(long)T * f];
        var e = PhaseTimes.Time(Phases, "keys", () =>
        {
            foreach (var pk in packs)
            {
                using var kr = tf.Forward(pk.Ids, new ForwardOptions { CaptureKeysAt = [hp.Layer], StopAfterLayer = hp.Layer, Segments = pk.Lengths });
                var part = new double[(long)pk.Ids.Length * f];
                b.ToHost(kr.MlpKeys[hp.Layer], part);
                part.CopyTo(keys, (long)pk.Offset * f);
            }
            return adaptor.RoutingInputs([], idArr, lengths);
        });

        // the new expert: A random, B zero (it starts as no change), key anchored on the batch's target rows
        var rng = new Random(hp.Seed * 7919 + 101 + adaptor.Experts.Count);
        var vbar = new double[kd];
        foreach (int row in rows) { var v = adaptor.RouteOf(e[row]).V; for (int j = 0; j < kd; j++) vbar[j] += v[j] / R; }
        double vn2 = vbar.Sum(x => x * x);
        var key = vbar.Select(x => vn2 > 0 ? 5 * x / vn2 : 0).ToArray();
        var ex = adaptor.AddExpert(LemoeAdaptor.Init(rng, rank * f, 1 / Math.Sqrt(f)), new double[d * rank], key);
        int n = adaptor.Experts.Count - 1;

        var opt = new Adam<double>([ex.A, ex.B, ex.Key, adaptor.RouterDown, adaptor.RouterUp], new AdamSettings(AdamUpdate.AdamW));
        var zero = b.Zeros(d);
        int maxT = packs.Max(pk => pk.Ids.Length);
        var grads = Enumerable.Range(0, maxT).Select(_ => b.Zeros(d)).ToArray();
        var isRow = new bool[T];
        foreach (int row in rows) isRow[row] = true;
        double initial = double.NaN, nll = double.NaN;
        int steps = 0;
        PhaseTimes.Time(Phases, "train", () =>
        {
            try
            {
                for (int step = 0; step < hp.Steps; step++)
                {
                    // the mean NLL over all target rows: each pack's mean weighted by its share of the rows
                    var G = new double[(long)T * d];
                    var row = new double[d];
                    var forwards = new List<(Pack Pack, ForwardResult R, Tensor Dl)>();
                    nll = 0;
                    try
                    {
                        foreach (var pk in packs)
                        {
                            int Tp = pk.Ids.Length;
                            var iv = Enumerable.Range(0, Tp).Select(t => new Intervention(hp.Layer, InterventionSite.MlpOutput, t, zero)).ToArray();
                            var r = tf.Forward(pk.Ids, new ForwardOptions { Segments = pk.Lengths, LogitRows = pk.Rows, KeepForBackward = true, Interventions = iv });
                            var dl = b.Zeros(r.Logits.Shape);
                            forwards.Add((pk, r, dl));
                            double share = pk.Rows.Length / (double)R;
                            nll += share * b.CrossEntropy(r.Logits, pk.Targets, dl, share);
                        }
                        if (step == 0) initial = nll;
                        if (nll < hp.EarlyStopLoss) break;
                        foreach (var (pk, r, dl) in forwards)
                        {
                            int Tp = pk.Ids.Length;
                            var pg = grads.AsSpan(0, Tp).ToArray();
                            foreach (var g in pg) b.Zero(g);
                            tf.Backward(r, dl, pg);
                            for (int t = 0; t < Tp; t++) { b.ToHost(pg[t], row); row.CopyTo(G, (long)(pk.Offset + t) * d); }
                        }
                    }
                    finally
                    {
                        foreach (var (_, r, dl) in forwards) { r.Dispose(); dl.Dispose(); }
                    }
                    var (gA, gB, gKey, gDown, gUp) = adaptor.Gradients(e, keys, G, n, isRow, hp.RoutingLossWeight / R);
                    opt.Step([gA, gB, gKey, gDown, gUp], hp.Lr, hp.WeightDecay);
                    steps++;
                }
            }
            finally
            {
                zero.Dispose();
                foreach (var g in grads) g.Dispose();
            }
        });

        // the routes after training, split per request (what inference will see)
        var routes = e.Select(x => adaptor.RouteOf(x).Expert).ToArray();
        var split = new List<int[]>();
        int off = 0;
        foreach (int len in lengths) { split.Add(routes.AsSpan(off, len).ToArray()); off += len; }
        LastTrainingRoutes = split;
        LastTrace = new LemoeTrace(n, steps, initial, nll, rows.Average(rw => routes[rw] == n ? 1.0 : 0.0));
    }

    // Requests [first, ...) packed into one forward: rows Offset.. of the batch; Rows / Targets local to the pack.
    private sealed record Pack(int Offset, int[] Ids, int[] Lengths, int[] Rows, int[] Targets);
}
