using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

/// <summary>
/// The forward and backward of every supported architecture, written once against
/// <see cref="IBackend"/>. One sequence at a time (no padding), or several packed end to end
/// (<see cref="ForwardOptions.Segments"/>). Not thread-safe. A block's own forward and backward
/// are in Transformer.Block.cs, packed segments in Transformer.Segments.cs.
/// Inference forwards reuse one set of scratch activations (llm.c's single arena, per slot), so a
/// decode step allocates nothing but its outputs, and through <see cref="DecodeSession"/> (which
/// owns its logits) nothing at all on the SimdBackend; forwards kept for the backward allocate
/// their own (the tape owns them). Dispose frees the scratch.
/// </summary>
public sealed partial class Transformer : IDisposable
{
    public Transformer(Model model) { Model = model; _rope = model.Config.Rope; }

    // the rotary frequencies, made once (Rope is passed every layer of every step)
    private readonly RopeFrequencies _rope;

    // Slots of forwards of several tokens, and of one-token forwards (decode steps) apart: a step
    // between two prefills (several sessions on one transformer, a benchmark) then finds its slots
    // of shape [1, ·] still there instead of reallocating them.
    private readonly Dictionary<string, Tensor> _scratch = new(), _scratch1 = new();

    // The logits of the last result disposed, for the next forward of the same shape. A prefill's
    // logits are tens of MB ([128, 50257] is 26 MB) and fresh memory that size costs page faults that
    // the kernel zeroes: 11 % of a GPT-2-small prefill on the CPU before this. Exchanged atomically:
    // a result may be disposed on another thread than the one that runs forwards.
    private Tensor? _spareLogits;
    private bool _disposed;
    private Action<Tensor>? _recycle;

    private void Recycle(Tensor logits)
    {
        var old = Interlocked.Exchange(ref _spareLogits, Volatile.Read(ref _disposed) ? null : logits);
        old?.Dispose();
        if (Volatile.Read(ref _disposed)) logits.Dispose();
    }

    // logits [rows, V] to be overwritten: the spare when it has that shape, else new.
    private Tensor NewLogits(int rows)
    {
        var t = Interlocked.Exchange(ref _spareLogits, null);
        if (t is not null && t.Shape.Length == 2 && t.Rows == rows && t.Cols == C.Vocab) return t;
        t?.Dispose();
        return B.Zeros(rows, C.Vocab);
    }

    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        Interlocked.Exchange(ref _spareLogits, null)?.Dispose();
        foreach (var t in _scratch.Values) t.Dispose();
        foreach (var t in _scratch1.Values) t.Dispose();
        _scratch.Clear();
        _scratch1.Clear();
    }

    /// <summary>Scratch tensor for slot (contents undefined: every forward op overwrites its output).</summary>
    private Tensor Scratch(string slot, int[] shape) => Scratch(slot, shape.Length, shape[0], shape.Length > 1 ? shape[1] : 0, shape.Length > 2 ? shape[2] : 0);

    /// <summary>Scratch tensor [d0] (rank 1), [d0, d1] (rank 2) or [d0, d1, d2] (rank 3); the shape is compared without an array, so a hit allocates nothing.</summary>
    private Tensor Scratch(string slot, int rank, int d0, int d1 = 0, int d2 = 0)
    {
        var slots = d0 == 1 ? _scratch1 : _scratch;
        if (slots.TryGetValue(slot, out var t))
        {
            var s = t.Shape;
            if (s.Length == rank && s[0] == d0 && (rank < 2 || s[1] == d1) && (rank < 3 || s[2] == d2)) return t;
            t.Dispose();
        }
        int[] shape = rank switch { 1 => [d0], 2 => [d0, d1], _ => [d0, d1, d2] };
        return slots[slot] = B.Zeros(shape);
    }

    // One block's activations in an inference forward: reused (the tape keeps fresh ones).
    private readonly BlockTape _block = new();

    private static readonly ForwardOptions NoOptions = new();
    private static readonly ForwardOptions LastRowOnly = new() { LogitsFrom = -1 };

    public Model Model { get; }

    /// <summary>
    /// A bypass added to one block's MLP output in every forward (LEMoE); null: none. The backward
    /// treats its output as a constant. Owned by the caller.
    /// </summary>
    public IMlpAdaptor? Adaptor { get; set; }
    private ModelConfig C => Model.Config;
    private IBackend B => Model.Backend;
    private ParamSet<Tensor> P => Model.Params;

    /// <summary>Run the backend's own <see cref="IFusedLinear"/> (off: the plain composition, <see cref="ComposedLinear"/>; the GPU benchmark compares the two).</summary>
    internal bool UseFusedLinear { get; set; } = true;
    private ComposedLinear? _composed;

    // Every linear product of a block, forward and backward, with its epilogue (bias, residual,
    // activation): the backend decides what to fuse.
    private IFusedLinear F => UseFusedLinear ? B : _composed ??= new ComposedLinear(B);

    /// <summary>
    /// Runs ids [T] (positions cache.Length.., or 0.. without a cache) and returns logits [T, V].
    /// With a cache, keys/values are appended to it. With StartAtLayer = l > 0 it runs blocks l..
    /// from StartResidual [T, d] instead (ids still give T and are checked). Throws
    /// ArgumentException for ids outside the vocabulary, a sequence longer than the context (with
    /// segments: all of them together), or options that cannot go together; InvalidOperationException
    /// for a cache that an earlier failed forward left incomplete (<see cref="KvCache.Incomplete"/>).
    /// </summary>
    public ForwardResult Forward(ReadOnlySpan<int> ids, ForwardOptions? options = null, KvCache? cache = null)
        => Run(ids, options ?? NoOptions, cache, logitsInto: null)!;

    /// <summary>
    /// A decode step: runs ids [T] after the cache's tokens (appending their keys and values) and
    /// writes the last row's logits into <paramref name="logits"/> [1, V] (the caller's, reused).
    /// It returns no <see cref="ForwardResult"/>, so on the SimdBackend a warm step allocates
    /// nothing on the managed heap (<see cref="DecodeSession"/>).
    /// </summary>
    internal void ForwardLast(ReadOnlySpan<int> ids, KvCache cache, Tensor logits)
    {
        if (logits.Rows != 1 || logits.Cols != C.Vocab) throw new ArgumentException($"logits {logits} is not [1, {C.Vocab}]");
        Run(ids, LastRowOnly, cache, logits);
    }

    // Forward's body. logitsInto (ForwardLast, plain options only): the logits go there and no result is returned.
    private ForwardResult? Run(ReadOnlySpan<int> ids, ForwardOptions o, KvCache? cache, Tensor? logitsInto)
    {
        var plan = o.Validate(C, ids, cache);
        // the backend's rotary table covers the whole cache now rather than growing during the steps
        if (cache is not null && C.RotaryDim > 0) B.ReserveRope(cache.Capacity, C.RotaryDim, _rope);
        var p = new ForwardPass(this, ids, cache, plan.Segs, o.Interventions ?? [], o.KeepForBackward ? new List<Tensor>() : null);
        var keysAt = o.CaptureKeysAt is { } ka ? new HashSet<int>(ka) : null;
        var keys = keysAt is null ? null : new Dictionary<int, Tensor>();
        var hidden = o.CaptureHidden ? new Tensor[C.Layers + 1] : null;
        var tape = p.Owned is null ? null : new Tape { Blocks = new BlockTape[C.Layers], StartAtLayer = plan.Start, Interventions = p.Interventions, Owned = p.Owned };

        var x = Embed(ids, o, plan, p);                                          // x [T, d]
        for (int l = plan.Start; l < C.Layers; l++)
        {
            Apply(p.Interventions, l, InterventionSite.ResidualIn, x);
            if (hidden is not null) hidden[l] = Copy(x);
            var bt = tape is null ? _block : new BlockTape();
            bool captureKey = keysAt?.Contains(l) == true;
            x = BlockForward(l, x, bt, p, captureKey);                             // x [T, d] = block l (x)
            Apply(p.Interventions, l, InterventionSite.BlockOutput, x);
            if (captureKey) keys![l] = bt.Key;
            if (tape is not null) tape.Blocks[l] = bt;
            if (l == o.StopAfterLayer)
                return new ForwardResult { MlpKeys = keys ?? new Dictionary<int, Tensor>(), Residual = o.ReturnResidual ? Copy(x) : null, Ids = ids.ToArray(), PositionOffset = p.Pos0, Segments = plan.Segs?.Lengths };
        }

        // final norm and head: logits [R, V] = norm_f(x)[rows] · Headᵀ (+ b)
        var xf = p.New("xf", p.T, C.DModel); var meanF = p.New1("meanF", p.T); var rstdF = p.New1("rstdF", p.T);
        Norm(x, P.LnFG, P.LnFB, xf, meanF, rstdF);                               // xf [T, d]
        Tensor? finalResidual = null;
        if (hidden is not null) { hidden[C.Layers] = Copy(xf); finalResidual = Copy(x); }
        var xHead = HeadRows(xf, plan, p);                                       // xHead [R, d]
        var logits = logitsInto ?? NewLogits(xHead.Rows);
        B.MatMul(xHead, false, P.Head, true, logits);                            // logits [R, V] (overwritten)
        if (P.HeadB is not null) B.AddBias(logits, P.HeadB);
        cache?.Commit(ids, p.Pos0);
        if (tape is not null)
        {
            tape.XL = x; tape.XF = xf; tape.XHead = xHead; tape.MeanF = meanF; tape.RstdF = rstdF;
        }

        if (logitsInto is not null) return null; // ForwardLast: the caller owns the logits, nothing else was asked
        return new ForwardResult { Logits = logits, RecycleLogits = _recycle ??= Recycle, Hidden = hidden, FinalResidual = finalResidual, MlpKeys = keys ?? new Dictionary<int, Tensor>(), Tape = tape, Ids = ids.ToArray(), PositionOffset = p.Pos0, LogitsFrom = plan.LogitsFrom, LogitRows = plan.LogitRows, Segments = plan.Segs?.Lengths };
    }

    // The residual stream entering block plan.Start: x [T, d] = wte[ids] (+ wpe[pos]; with segments
    // pos restarts at 0 in each), or a copy of StartResidual in the slot that block reads in a full
    // run (ResidualIn interventions add in place, and the caller's tensor must stay as it was).
    private Tensor Embed(ReadOnlySpan<int> ids, ForwardOptions o, ForwardPlan plan, in ForwardPass p)
    {
        var x = p.New(plan.Start % 2 == 0 ? "x0" : "x1", p.T, C.DModel);
        if (plan.Start > 0) B.CopyRows(o.StartResidual!, 0, x, 0, p.T);
        else if (plan.Segs is null || P.Wpe is null) B.Embed(ids, P.Wte, P.Wpe, p.Pos0, x);
        else EmbedSegments(ids, plan.Segs, x);
        return x;
    }

    // The rows of xf [T, d] the head reads: xHead [R, d] = xf[LogitRows], xf[LogitsFrom..], or xf itself
    private Tensor HeadRows(Tensor xf, ForwardPlan plan, in ForwardPass p)
    {
        int T = p.T, from = plan.LogitsFrom;
        if (plan.LogitRows is { } rows)
        {
            var xHead = p.New("xHead", rows.Length, C.DModel);
            for (int i = 0; i < rows.Length; i++) B.CopyRows(xf, rows[i], xHead, i, 1);
            return xHead;
        }
        if (from == 0) return xf;
        var tail = p.New("xHead", T - from, C.DModel);
        B.CopyRows(xf, from, tail, 0, T - from);
        return tail;
    }

    /// <summary>
    /// Backpropagates dlogits (shaped like fr.Logits) through a forward run with KeepForBackward.
    /// interventionGrads[i] [d] accumulates d loss / d (forward's Interventions[i].Delta).
    /// weightGrads (optional, from <see cref="Model.ZerosLikeParams"/>) accumulates every weight's gradient.
    /// Without weight gradients the pass stops at the lowest intervention (it is not needed further),
    /// so a forward run from StartAtLayer > 0 has every activation it needs, but no weight gradients.
    /// Returns nothing else; embeddings' gradient goes into weightGrads.Wte / Wpe.
    /// mlpOutputGrads (optional): layer → [T, d], accumulates d loss / d (that block's MLP output) at
    /// every row (UltraEdit's value gradients: every token's, without T interventions per layer);
    /// the pass then runs down to the lowest such layer.
    /// </summary>
    public void Backward(ForwardResult fr, Tensor dlogits, IReadOnlyList<Tensor>? interventionGrads, ParamSet<Tensor>? weightGrads = null,
        IReadOnlyDictionary<int, Tensor>? mlpOutputGrads = null)
    {
        var tape = fr.Tape ?? throw new InvalidOperationException("Backward needs a forward run with KeepForBackward = true");
        int T = fr.Ids.Length, d = C.DModel;
        var ivs = tape.Interventions;
        if (interventionGrads is not null && interventionGrads.Count != ivs.Count)
            throw new ArgumentException($"{interventionGrads.Count} gradient vectors for {ivs.Count} interventions");
        if (weightGrads is not null && tape.StartAtLayer > 0)
            throw new ArgumentException($"weight gradients need the whole forward, and this one started at StartAtLayer {tape.StartAtLayer}: the blocks below it and the embedding kept no activations");
        var G = weightGrads;
        var temps = new List<Tensor>();
        int lowest = weightGrads is not null ? 0 : (ivs.Count == 0 ? C.Layers : ivs.Min(i => i.Layer));
        if (mlpOutputGrads is { Count: > 0 })
        {
            foreach (var (l, g) in mlpOutputGrads)
            {
                if (l < Math.Max(0, tape.StartAtLayer) || l >= C.Layers) throw new ArgumentException($"mlpOutputGrads: layer {l} is outside the blocks this forward ran ({tape.StartAtLayer}..{C.Layers - 1})");
                if (g.Rows != T || g.Cols != d) throw new ArgumentException($"mlpOutputGrads[{l}] {g} is not [{T}, {d}]");
            }
            lowest = Math.Min(lowest, mlpOutputGrads.Keys.Min());
        }
        var segs = fr.Segments is null ? null : Segs.Check(fr.Segments, T, null);
        // with segments: dO_s, dq_s [max n_s, H·hd], dk_s, dv_s [max n_s, Hkv·hd], reused by every block
        var segGrads = segs is null || PackedAttention is not null ? null
            : new[] { Fresh(temps, segs.Max, C.QDim), Fresh(temps, segs.Max, C.QDim), Fresh(temps, segs.Max, C.KvDim), Fresh(temps, segs.Max, C.KvDim) };
        var p = new BackwardPass(this, temps, T, fr.PositionOffset, ivs, interventionGrads, segs, segGrads);

        try
        {
            var dx = HeadBackward(fr, dlogits, tape, G, p);                       // dx [T, d] = d loss / d x_L
            for (int l = C.Layers - 1; l >= lowest; l--)
            {
                // dx is d loss / d x_{l+1}: the gradient of the block output = of the MLP output.
                AddInterventionGrads(p, l, dx, InterventionSite.MlpOutput, InterventionSite.BlockOutput);
                if (mlpOutputGrads is not null && mlpOutputGrads.TryGetValue(l, out var mlpGrad)) B.Add(mlpGrad, dx, mlpGrad);
                // Below this point the lowest block's backward feeds only weight gradients and
                // the interventions on its attention output or input: without them, stop here.
                if (l == lowest && G is null && !ivs.Any(iv => iv.Layer == l && iv.Site is InterventionSite.AttnOutput or InterventionSite.ResidualIn))
                    break;
                dx = BlockBackward(l, tape.Blocks[l], dx, G?.Blocks[l], p);        // dx [T, d] = d loss / d x_l
            }
            // without learned positions the segments' positions do not matter to the embeddings
            if (G is not null && (segs is null || G.Wpe is null)) B.EmbedBackward(fr.Ids, dx, G.Wte, G.Wpe, fr.PositionOffset);
            else if (G is not null) EmbedSegmentsBackward(fr.Ids, segs!, dx, G, p.New(segs!.Max, d));
        }
        finally
        {
            foreach (var t in temps) t.Dispose();
        }
    }

    // Backward of the head and final norm: dlogits [R, V] -> dx [T, d] = d loss / d x_L; the head's
    // and the final norm's weight gradients accumulate into G (optional).
    private Tensor HeadBackward(ForwardResult fr, Tensor dlogits, Tape tape, ParamSet<Tensor>? G, in BackwardPass p)
    {
        // dxHead [R, d] = dlogits [R, V] · Head; dHead [V, d] += dlogitsᵀ · xHead (rows R = T − from)
        int T = p.T, d = C.DModel, from = fr.LogitsFrom, R = fr.LogitRows?.Length ?? T - from;
        if (dlogits.Rows != R || dlogits.Cols != C.Vocab) throw new ArgumentException($"dlogits {dlogits} does not match logits {fr.Logits}");
        var dxHead = p.New(R, d);
        B.MatMul(dlogits, false, P.Head, false, dxHead);
        if (G is not null)
        {
            B.MatMul(dlogits, true, tape.XHead, false, G.Head, accumulate: true);
            if (G.HeadB is not null) B.SumRows(dlogits, G.HeadB, accumulate: true);
        }
        var dxf = dxHead;                                                         // dxf [T, d]
        if (fr.LogitRows is { } rs)
        {
            // scatter back: rows are distinct, the rest of dxf stays zero
            dxf = p.New(T, d);
            for (int i = 0; i < R; i++) B.CopyRows(dxHead, i, dxf, rs[i], 1);
        }
        else if (from > 0) { dxf = p.New(T, d); B.CopyRows(dxHead, 0, dxf, from, R); }
        var dx = p.New(T, d);
        NormBackward(dxf, tape.XL, P.LnFG, tape.MeanF, tape.RstdF, dx, G?.LnFG, G?.LnFB);
        return dx;
    }

    // rotary on q [n, H·hd] and k [n, Hkv·hd] from position pos0 (inverse: its transpose, for gradients); no-op without rotary
    private void Rotate(Tensor q, Tensor k, int pos0, bool inverse)
    {
        if (C.RotaryDim == 0) return;
        B.Rope(q, C.Heads, C.HeadDim, C.RotaryDim, C.RotaryInterleaved, _rope, pos0, inverse);
        B.Rope(k, C.KvHeads, C.HeadDim, C.RotaryDim, C.RotaryInterleaved, _rope, pos0, inverse);
    }

    private static bool At(IReadOnlyList<Intervention> interventions, int layer, InterventionSite site)
    {
        for (int i = 0; i < interventions.Count; i++) // indexed: foreach over the interface boxes an enumerator
            if (interventions[i].Layer == layer && interventions[i].Site == site) return true;
        return false;
    }

    // x [T, d]: row Position += Delta (or = Delta when Replace) for the interventions at (layer, site)
    private void Apply(IReadOnlyList<Intervention> interventions, int layer, InterventionSite site, Tensor x)
    {
        for (int i = 0; i < interventions.Count; i++)
        {
            var iv = interventions[i];
            if (iv.Layer != layer || iv.Site != site) continue;
            if (!iv.Replace) { B.AddToRow(x, iv.Position, iv.Delta); continue; }
            B.CopyRows(iv.Delta, 0, x, iv.Position, 1); // Delta [d] is one row of d columns
        }
    }

    // grads[i] [d] += d [T, d] at row Position, for each intervention i at layer l and site (or also),
    // in their order: the caller's gradient vectors may be one tensor
    private void AddInterventionGrads(in BackwardPass p, int l, Tensor d, InterventionSite site, InterventionSite? also = null)
    {
        if (p.Grads is null) return;
        for (int i = 0; i < p.Interventions.Count; i++)
        {
            var iv = p.Interventions[i];
            if (iv.Layer == l && (iv.Site == site || iv.Site == also)) B.GetRow(d, iv.Position, p.Grads[i], accumulate: true);
        }
    }

    private void Norm(Tensor x, Tensor g, Tensor? b, Tensor y, Tensor mean, Tensor rstd)
    {
        if (C.Norm == NormKind.RmsNorm) B.RmsNorm(x, g, C.NormEps, y, rstd);
        else B.LayerNorm(x, g, b, C.NormEps, y, mean, rstd);
    }

    // dx [T, d] += ∂ norm / ∂ x · dy
    private void NormBackward(Tensor dy, Tensor x, Tensor g, Tensor mean, Tensor rstd, Tensor dx, Tensor? dg, Tensor? db)
    {
        if (C.Norm == NormKind.RmsNorm) B.RmsNormBackward(dy, x, g, rstd, dx, dg);
        else B.LayerNormBackward(dy, x, g, mean, rstd, dx, dg, db);
    }

    // a new tensor of shape, owned by the tape (its temps)
    private Tensor Fresh(List<Tensor> owned, params int[] shape)
    {
        var t = B.Zeros(shape);
        owned.Add(t);
        return t;
    }

    private Tensor Copy(Tensor x)
    {
        var c = B.Zeros(x.Shape);
        B.CopyRows(x, 0, c, 0, x.Rows);
        return c;
    }
}
