using Palimpsest.Backends;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>One WilKE layer scan: the ROME delta's LA = ||ΔW_l||_F / ||W_l||_F at each scanned layer (NaN where the delta is zero), and the layer chosen.</summary>
public sealed record WilkeScan(int[] Layers, double[] La, int Chosen);

/// <summary>
/// WilKE ("Wise-Layer Knowledge Editor", Hu et al. 2024; code ChenhuiHu/WilKE wilke/wilke_main.py):
/// for each edit, the ROME edit is computed at every layer below scanning_ceiling, and the one with
/// the smallest LA = ||ΔW_l||_F / ||W_l||_F (the down-projection's relative change) is returned.
/// The chosen layer is the delta's Layer, so the journal records it and a revert undoes it there.
/// The reference re-runs the edit at the chosen layer; ROME here is deterministic, so the scanned
/// delta is that edit. Each layer's v* optimisation resumes at its own layer (the forward below it
/// is computed once per layer, not once per step), and the layers are scanned in parallel on CPU
/// backends (<see cref="MaxParallelLayers"/>).
/// </summary>
public sealed class Wilke : IPreparedEditor
{
    private readonly Rome _rome;

    /// <param name="hparams">ROME's hyper-parameters for every scanned layer (their layers field is ignored).</param>
    /// <param name="scanningCeiling">Layers 0..ceiling−1 are scanned (reference: 24 for GPT2-XL, 7 for GPT-J; a model's depth for small ones).</param>
    /// <param name="secondMoment">C_l for each layer (see KeyStatistics).</param>
    public Wilke(RomeHparams hparams, int scanningCeiling, ITextTokenizer tokenizer, Func<int, double[]> secondMoment)
    {
        if (scanningCeiling < 1) throw new ArgumentException($"scanning_ceiling must be at least 1 (got {scanningCeiling})");
        ScanningCeiling = scanningCeiling;
        _rome = new Rome(hparams with { Layers = [0] }, tokenizer, secondMoment);
    }

    public string Method => "wilke";

    /// <summary>"scan" (ROME's edit at every scanned layer, the layers run at once, so its keys, values and solve are not told apart) and "choose layer" (each layer's LA).</summary>
    public PhaseTimes? Phases { get; set; }

    public string LastOutcome => LastScan is { } s ? $"layer {s.Chosen} (LA {Editors.Loss(s.La[s.Chosen])})" : "-";
    public int ScanningCeiling { get; }

    /// <summary>The scan of the last edit.</summary>
    public WilkeScan? LastScan { get; private set; }

    /// <summary>
    /// How many layers are scanned at once (default: one per core). Each runs on its own Transformer
    /// and backend sibling over the same weights (<see cref="ISiblingBackend"/>), with the cores
    /// split between them; backends without siblings (CUDA) scan one layer at a time. Every layer's
    /// delta is the same bit for bit however many run at once.
    /// </summary>
    public int MaxParallelLayers { get; init; } = Environment.ProcessorCount;

    /// <summary>The ROME trace of the chosen layer of the last edit.</summary>
    public RomeTrace? LastRomeTrace { get; private set; }

    /// <summary>The context templates and C's factor at every scanned layer (see <see cref="IPreparedEditor"/>).</summary>
    public void Prepare(Transformer tf)
    {
        for (int l = 0; l < Math.Min(ScanningCeiling, tf.Model.Config.Layers); l++) _rome.Prepare(tf, l);
    }

    public IReadOnlyList<WeightDelta> ComputeDeltas(Transformer tf, IReadOnlyList<EditRequest> requests)
    {
        if (requests.Count != 1) throw new ArgumentException($"WilKE edits one request at a time (got {requests.Count}); apply them in sequence");
        var req = requests[0];
        req.Validate();
        int ceiling = Math.Min(ScanningCeiling, tf.Model.Config.Layers);
        var layers = Enumerable.Range(0, ceiling).ToArray();
        Prepare(tf);
        var deltas = new WeightDelta[ceiling];
        var traces = new RomeTrace[ceiling];
        PhaseTimes.Time(Phases, "scan", () => Scan(tf, req, ceiling, deltas, traces));
        var (la, chosen) = PhaseTimes.Time(Phases, "choose layer", () => Choose(tf, deltas));
        LastScan = new WilkeScan(layers, la, chosen);
        LastRomeTrace = traces[chosen];
        return [deltas[chosen]];
    }

    // ROME's delta (and trace) at each layer below the ceiling, several layers at once where the backend has siblings
    private void Scan(Transformer tf, EditRequest req, int ceiling, WeightDelta[] deltas, RomeTrace[] traces)
    {
        int parallel = Math.Min(ceiling, Math.Max(1, MaxParallelLayers));
        // An adaptor (LEMoE) keeps its own scratch on the model's backend, so it scans one layer at a time.
        if (parallel > 1 && tf.Adaptor is null && tf.Model.Backend is ISiblingBackend siblings)
        {
            // The weights are only read until the chosen delta is returned, so every layer's ROME
            // can run at once; each gets its own backend (scratch, worker threads) and Transformer.
            int threadsEach = Math.Max(1, Environment.ProcessorCount / parallel);
            var errors = new Exception?[ceiling];
            Parallel.For(0, ceiling, new ParallelOptions { MaxDegreeOfParallelism = parallel }, l =>
            {
                try
                {
                    using var backend = siblings.CreateSibling(threadsEach);
                    using var view = tf.Model.ViewOn(backend);
                    using var own = new Transformer(view) { UsePackedAttention = tf.UsePackedAttention };
                    deltas[l] = _rome.Compute(own, req, l, out traces[l]);
                }
                catch (Exception e) { errors[l] = e; }
            });
            // the lowest layer's error, as the sequential scan would have met it first
            if (errors.FirstOrDefault(e => e is not null) is { } first) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
        }
        else
            for (int l = 0; l < ceiling; l++) deltas[l] = _rome.Compute(tf, req, l, out traces[l]);
    }

    // each layer's LA and the layer chosen
    private static (double[] La, int Chosen) Choose(Transformer tf, WeightDelta[] deltas)
    {
        int ceiling = deltas.Length;
        var la = new double[ceiling];
        bool allZero = true;
        for (int l = 0; l < ceiling; l++)
        {
            double n = deltas[l].FrobeniusNorm();
            allZero &= n == 0;
            // A zero delta cannot win: it is the layer where δ has no gradient (at the model's last
            // block nothing carries the subject's position to the prediction), not a cheap edit.
            la[l] = n == 0 ? double.NaN : n / DownProjectionNorm(tf, l);
        }
        // Every delta zero: the request already holds (v* stopped before its first step at every
        // layer), so there is no layer to prefer and nothing to change; the first layer's zero delta
        // keeps the stream going, as ROME's own zero delta does (1,000-edit run, 2026-11-26).
        return (la, allZero ? 0 : ChooseLayer(la));
    }

    /// <summary>The index of the smallest LA (the first on ties); NaN values never win.</summary>
    public static int ChooseLayer(IReadOnlyList<double> la)
    {
        int best = -1;
        for (int i = 0; i < la.Count; i++)
            if (!double.IsNaN(la[i]) && (best < 0 || la[i] < la[best])) best = i;
        return best >= 0 ? best : throw new ArgumentException("every layer's LA is NaN: no layer to choose");
    }

    // ||W_l||_F of the down-projection as it is now (it changes with every applied edit)
    private static double DownProjectionNorm(Transformer tf, int layer) => Math.Sqrt(tf.Model.DownProjection(layer).Sum(x => x * x));
}
