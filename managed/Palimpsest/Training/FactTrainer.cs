using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Training;

/// <summary>Settings of <see cref="FactTrainer"/>.</summary>
public sealed record TrainOptions
{
    /// <summary>Tokens per packed training sequence (examples are concatenated, each ending in EOS).</summary>
    public int PackLength { get; init; } = 64;
    /// <summary>Packed sequences per optimiser step.</summary>
    public int BatchSequences { get; init; } = 8;
    public double Lr { get; init; } = 2e-3;
    public double MinLrFraction { get; init; } = 0.1;
    public int WarmupSteps { get; init; } = 100;
    public double WeightDecay { get; init; } = 0.1;
    public double ClipNorm { get; init; } = 1.0;
    public int MaxEpochs { get; init; } = 60;
    /// <summary>
    /// Stop once this fraction of the training examples is answered (every answer token the argmax)
    /// within an epoch: regularised, not trained far past memorisation (the shared models were
    /// trained 100 epochs without regularisation and would not take an edit at the subject).
    /// </summary>
    public double TargetAccuracy { get; init; } = 0.99;
    public int Seed { get; init; } = 1;
}

/// <summary>One epoch of training: mean loss over answer tokens and the fraction of examples fully answered.</summary>
public sealed record EpochStats(int Epoch, int Steps, double Loss, double Accuracy, double Lr, double Seconds);

/// <summary>
/// Trains a GPT-style model on facts: examples (prompt ++ " answer" ++ EOS) are shuffled and
/// packed into sequences of PackLength tokens (as GPT pre-training packs documents; it also shows
/// the model facts after unrelated text, as ROME's context prefixes will), and the loss is the
/// cross-entropy of the answer tokens and the EOS after them — the prompt is given, not modelled.
/// AdamW with warm-up and cosine decay; float32 on the SIMD CPU backend.
/// </summary>
public sealed class FactTrainer(Transformer tf, int eosId)
{
    /// <summary>GPT-2's initialisation: N(0, 0.02²) matrices, residual projections scaled by 1/√(2L), zero biases, unit gains.</summary>
    public static ParamSet<HostTensor> Initialise(ModelConfig c, int seed)
    {
        var rng = new Random(seed);
        int d = c.DModel, f = c.DFf;
        HostTensor N(double std, params int[] shape)
        {
            long n = 1; foreach (var s in shape) n *= s;
            var a = new float[n];
            for (long i = 0; i < n; i++) a[i] = (float)(std * Gaussian(rng));
            return new HostTensor(shape, a);
        }
        HostTensor Fill(float v, int n) { var a = new float[n]; Array.Fill(a, v); return new HostTensor([n], a); }
        double proj = 0.02 / Math.Sqrt(2.0 * c.Layers);
        var blocks = new BlockParams<HostTensor>[c.Layers];
        for (int i = 0; i < c.Layers; i++)
            blocks[i] = new BlockParams<HostTensor>
            {
                Ln1G = Fill(1, d), Ln1B = Fill(0, d), Ln2G = Fill(1, d), Ln2B = Fill(0, d),
                Wq = N(0.02, d, d), Bq = Fill(0, d), Wk = N(0.02, d, d), Bk = Fill(0, d), Wv = N(0.02, d, d), Bv = Fill(0, d),
                Wo = N(proj, d, d), Bo = Fill(0, d),
                WUp = N(0.02, d, f), BUp = Fill(0, f), WDown = N(proj, f, d), BDown = Fill(0, d),
            };
        var wte = N(0.02, c.Vocab, d);
        return new ParamSet<HostTensor>
        {
            Wte = wte, Wpe = N(0.01, c.MaxPositions, d), Blocks = blocks, LnFG = Fill(1, d), LnFB = Fill(0, d), Head = wte,
        };
    }

    private static double Gaussian(Random r)
    {
        double u1 = 1.0 - r.NextDouble(), u2 = r.NextDouble();
        return Math.Sqrt(-2 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }

    /// <summary>
    /// Trains until the epoch accuracy reaches the target or MaxEpochs; reports each epoch.
    /// The model's weights are updated in place.
    /// </summary>
    public IReadOnlyList<EpochStats> Train(IReadOnlyList<FactExample> examples, TrainOptions o, Action<EpochStats>? onEpoch = null, CancellationToken cancel = default)
    {
        var c = tf.Model.Config;
        if (o.PackLength > c.MaxPositions) throw new ArgumentException($"PackLength {o.PackLength} exceeds the model's context {c.MaxPositions}");
        foreach (var e in examples)
            if (e.Prompt.Length + e.Answer.Length + 1 > o.PackLength)
                throw new ArgumentException($"an example of {e.Prompt.Length + e.Answer.Length + 1} tokens does not fit PackLength {o.PackLength}");
        var b = tf.Model.Backend;
        var grads = tf.Model.ZerosLikeParams();
        var opt = new AdamW(tf.Model.Params);
        var rng = new Random(o.Seed);
        var history = new List<EpochStats>();
        int step = 0;
        int stepsPerEpoch = (int)Math.Ceiling(Pack(examples, o.PackLength, new Random(0)).Count / (double)o.BatchSequences);
        int totalSteps = stepsPerEpoch * o.MaxEpochs;
        var hostLogits = Array.Empty<float>();
        try
        {
            for (int epoch = 1; epoch <= o.MaxEpochs; epoch++)
            {
                var t0 = System.Diagnostics.Stopwatch.StartNew();
                var seqs = Pack(examples, o.PackLength, rng);
                double lossSum = 0; int lossRows = 0, correct = 0, seen = 0;
                double lr = 0; int epochSteps = 0;
                for (int s0 = 0; s0 < seqs.Count; s0 += o.BatchSequences)
                {
                    cancel.ThrowIfCancellationRequested();
                    var batch = seqs.Skip(s0).Take(o.BatchSequences).ToList();
                    int batchRows = batch.Sum(q => q.Rows.Length);
                    foreach (var (_, g) in grads.Named()) b.Zero(g);
                    foreach (var q in batch)
                    {
                        using var r = tf.Forward(q.Ids, new ForwardOptions { KeepForBackward = true, LogitRows = q.Rows });
                        using var dl = b.Zeros(r.Logits.Shape);
                        double loss = b.CrossEntropy(r.Logits, q.Targets, dl, q.Rows.Length / (double)batchRows);
                        lossSum += loss * q.Rows.Length; lossRows += q.Rows.Length;
                        // accuracy: an example counts when every one of its target rows is the argmax
                        int V = c.Vocab;
                        if (hostLogits.Length < r.Logits.Length) hostLogits = new float[r.Logits.Length];
                        b.ToHost(r.Logits, hostLogits.AsSpan(0, (int)r.Logits.Length));
                        foreach (var (first, count, scored) in q.Examples)
                        {
                            if (!scored) continue;
                            bool ok = true;
                            for (int k = first; k < first + count && ok; k++)
                                ok = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(hostLogits.AsSpan(k * V, V)) == q.Targets[k];
                            if (ok) correct++;
                            seen++;
                        }
                        tf.Backward(r, dl, null, grads);
                    }
                    lr = LearningRate(o, step, totalSteps);
                    opt.Step(grads, lr, o.WeightDecay, o.ClipNorm);
                    step++; epochSteps++;
                }
                var st = new EpochStats(epoch, epochSteps, lossSum / Math.Max(1, lossRows), seen == 0 ? 0 : correct / (double)seen, lr, t0.Elapsed.TotalSeconds);
                history.Add(st);
                onEpoch?.Invoke(st);
                if (st.Accuracy >= o.TargetAccuracy) break;
            }
        }
        finally
        {
            foreach (var (_, g) in grads.Named()) g.Dispose();
        }
        return history;
    }

    // linear warm-up, then cosine decay to MinLrFraction·Lr at the last planned step
    private static double LearningRate(TrainOptions o, int step, int total)
    {
        if (step < o.WarmupSteps) return o.Lr * (step + 1) / o.WarmupSteps;
        double p = Math.Min(1, (step - o.WarmupSteps) / (double)Math.Max(1, total - o.WarmupSteps));
        return o.Lr * (o.MinLrFraction + (1 - o.MinLrFraction) * 0.5 * (1 + Math.Cos(Math.PI * p)));
    }

    /// <summary>
    /// A packed sequence: Ids [T]; Rows (ascending) whose next token is trained, with Targets[i] the
    /// token row Rows[i] must predict; Examples: (first index into Rows, count) per example.
    /// </summary>
    internal sealed record Packed(int[] Ids, int[] Rows, int[] Targets, List<(int First, int Count, bool Scored)> Examples);

    internal List<Packed> Pack(IReadOnlyList<FactExample> examples, int length, Random rng)
    {
        var order = Enumerable.Range(0, examples.Count).OrderBy(_ => rng.Next()).ToArray();
        var result = new List<Packed>();
        var ids = new List<int>(); var rows = new List<int>(); var targets = new List<int>(); var ex = new List<(int, int, bool)>();
        void Flush()
        {
            if (ids.Count == 0) return;
            result.Add(new Packed(ids.ToArray(), rows.ToArray(), targets.ToArray(), ex.ToList()));
            ids.Clear(); rows.Clear(); targets.Clear(); ex.Clear();
        }
        foreach (int i in order)
        {
            var e = examples[i];
            int n = e.Prompt.Length + e.Answer.Length + 1;
            if (ids.Count + n > length) Flush();
            int start = ids.Count;
            ids.AddRange(e.Prompt); ids.AddRange(e.Answer); ids.Add(eosId);
            // row t predicts token t+1: the last prompt token predicts the first answer token, ..., the last answer token predicts EOS
            ex.Add((rows.Count, e.Answer.Length + 1, e.Scored));
            for (int k = 0; k <= e.Answer.Length; k++)
            {
                rows.Add(start + e.Prompt.Length - 1 + k);
                targets.Add(k < e.Answer.Length ? e.Answer[k] : eosId);
            }
        }
        Flush();
        return result;
    }
}
