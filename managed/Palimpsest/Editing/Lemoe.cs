using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// An editor that does not change the model's weights but trains something beside them (LEMoE's
/// adaptor). Edit installs or extends it on the Transformer; the caller records and reverts it.
/// </summary>
public interface IAdaptorEditor
{
    string Method { get; }
    void Edit(Transformer tf, IReadOnlyList<EditRequest> requests);
}

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
public sealed class Lemoe(LemoeHparams hparams, ITextTokenizer tokenizer) : IAdaptorEditor
{
    public LemoeHparams Hparams { get; } = hparams;
    public string Method => "LEMoE";
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

    public void Edit(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        if (requests.Count == 0) return;
        foreach (var r in requests) r.Validate();
        var hp = Hparams;
        var adaptor = AdaptorOf(tf, hp);
        var b = tf.Model.Backend;
        int d = adaptor.DModel, f = adaptor.DFf, rank = adaptor.Rank, m = adaptor.RouterHidden, kd = adaptor.KeyDim;

        // the batch packed: prompt + target[:-1] per request; rows P−1+j predict target[j]
        var ids = new List<int>(); var lengths = new List<int>(); var rows = new List<int>(); var targets = new List<int>();
        foreach (var r in requests)
        {
            var prompt = tokenizer.Encode(r.FilledPrompt);
            var target = tokenizer.Encode(r.TargetNew.StartsWith(' ') ? r.TargetNew : " " + r.TargetNew);
            if (prompt.Length == 0 || target.Length == 0) throw new ArgumentException($"request '{r.Subject}': empty prompt or target after tokenisation");
            int at = ids.Count;
            ids.AddRange(prompt); ids.AddRange(target.AsSpan(0, target.Length - 1).ToArray());
            lengths.Add(prompt.Length + target.Length - 1);
            for (int j = 0; j < target.Length; j++) { rows.Add(at + prompt.Length - 1 + j); targets.Add(target[j]); }
        }
        int T = ids.Count, R = rows.Count;
        var idArr = ids.ToArray();

        // keys at the layer and routing inputs: neither depends on the adaptor
        var keys = new double[(long)T * f];
        using (var kr = tf.Forward(idArr, new ForwardOptions { CaptureKeysAt = [hp.Layer], StopAfterLayer = hp.Layer, Segments = lengths }))
            b.ToHost(kr.MlpKeys[hp.Layer], keys);
        var e = adaptor.RoutingInputs([], idArr, lengths);

        // the new expert: A random, B zero (it starts as no change), key anchored on the batch's target rows
        var rng = new Random(hp.Seed * 7919 + 101 + adaptor.Experts.Count);
        var vbar = new double[kd];
        foreach (int row in rows) { var v = adaptor.RouteOf(e[row]).V; for (int j = 0; j < kd; j++) vbar[j] += v[j] / R; }
        double vn2 = vbar.Sum(x => x * x);
        var key = vbar.Select(x => vn2 > 0 ? 5 * x / vn2 : 0).ToArray();
        var ex = adaptor.AddExpert(LemoeAdaptor.Init(rng, rank * f, 1 / Math.Sqrt(f)), new double[d * rank], key);
        int n = adaptor.Experts.Count - 1;

        var opt = new AdamW(hp.Lr, hp.WeightDecay, [ex.A, ex.B, ex.Key, adaptor.RouterDown, adaptor.RouterUp]);
        var zero = b.Zeros(d);
        var grads = Enumerable.Range(0, T).Select(_ => b.Zeros(d)).ToArray();
        var interventions = Enumerable.Range(0, T).Select(t => new Intervention(hp.Layer, InterventionSite.MlpOutput, t, zero)).ToArray();
        var isRow = new bool[T];
        foreach (int row in rows) isRow[row] = true;
        double initial = double.NaN, nll = double.NaN;
        int steps = 0;
        try
        {
            for (int step = 0; step < hp.Steps; step++)
            {
                foreach (var g in grads) b.Zero(g);
                using var r = tf.Forward(idArr, new ForwardOptions { Segments = lengths, LogitRows = rows, KeepForBackward = true, Interventions = interventions });
                using var dl = b.Zeros(r.Logits.Shape);
                nll = b.CrossEntropy(r.Logits, targets.ToArray(), dl);
                if (step == 0) initial = nll;
                if (nll < hp.EarlyStopLoss) break;
                tf.Backward(r, dl, grads);
                var G = new double[(long)T * d];
                var row = new double[d];
                for (int t = 0; t < T; t++) { b.ToHost(grads[t], row); row.CopyTo(G, (long)t * d); }

                var (gA, gB, gKey, gDown, gUp) = adaptor.Gradients(e, keys, G, n, isRow, hp.RoutingLossWeight / R);
                opt.Step([gA, gB, gKey, gDown, gUp]);
                steps++;
            }
        }
        finally
        {
            zero.Dispose();
            foreach (var g in grads) g.Dispose();
        }

        // the routes after training, split per request (what inference will see)
        var routes = e.Select(x => adaptor.RouteOf(x).Expert).ToArray();
        var split = new List<int[]>();
        int off = 0;
        foreach (int len in lengths) { split.Add(routes.AsSpan(off, len).ToArray()); off += len; }
        LastTrainingRoutes = split;
        LastTrace = new LemoeTrace(n, steps, initial, nll, rows.Average(rw => routes[rw] == n ? 1.0 : 0.0));
    }

    /// <summary>AdamW (decoupled weight decay) over parameter arrays updated in place.</summary>
    private sealed class AdamW(double lr, double weightDecay, double[][] parameters)
    {
        private const double Beta1 = 0.9, Beta2 = 0.999, Eps = 1e-8;
        private readonly double[][] _m = parameters.Select(p => new double[p.Length]).ToArray();
        private readonly double[][] _v = parameters.Select(p => new double[p.Length]).ToArray();
        private int _t;

        public void Step(double[][] grads)
        {
            _t++;
            double c1 = 1 - Math.Pow(Beta1, _t), c2 = 1 - Math.Pow(Beta2, _t);
            for (int k = 0; k < parameters.Length; k++)
            {
                var p = parameters[k]; var g = grads[k]; var m = _m[k]; var v = _v[k];
                for (int i = 0; i < p.Length; i++)
                {
                    m[i] = Beta1 * m[i] + (1 - Beta1) * g[i];
                    v[i] = Beta2 * v[i] + (1 - Beta2) * g[i] * g[i];
                    p[i] -= lr * (m[i] / c1 / (Math.Sqrt(v[i] / c2) + Eps) + weightDecay * p[i]);
                }
            }
        }
    }
}
