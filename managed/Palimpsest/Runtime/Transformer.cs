using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

/// <summary>
/// The forward and backward of every supported architecture, written once against
/// <see cref="IBackend"/>. One sequence at a time (no padding), or several packed end to end
/// (<see cref="ForwardOptions.Segments"/>). Not thread-safe. Packed segments are in
/// Transformer.Segments.cs.
/// Inference forwards reuse one set of scratch activations (llm.c's single arena, per slot), so a
/// decode step allocates nothing but its outputs, and through <see cref="DecodeSession"/> (which
/// owns its logits) nothing at all on the SimdBackend; forwards kept for the backward allocate
/// their own (the tape owns them). Dispose frees the scratch.
/// </summary>
public sealed partial class Transformer : IDisposable
{
    public Transformer(Model model) { Model = model; }

    // Slots of forwards of several tokens, and of one-token forwards (decode steps) apart: a step
    // between two prefills (several sessions on one transformer, a benchmark) then finds its slots
    // of shape [1, ·] still there instead of reallocating them.
    private readonly Dictionary<string, Tensor> _scratch = new(), _scratch1 = new();

    public void Dispose()
    {
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

    /// <summary>
    /// Runs ids [T] (positions cache.Length.., or 0.. without a cache) and returns logits [T, V].
    /// With a cache, keys/values are appended to it. With StartAtLayer = l > 0 it runs blocks l..
    /// from StartResidual [T, d] instead (ids still give T and are checked). Throws
    /// ArgumentException for ids outside the vocabulary, a sequence longer than the context (with
    /// segments: all of them together), or options that cannot go together.
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
        int T = ids.Length, d = C.DModel, f = C.DFf;
        int pos0 = cache?.Length ?? 0, start = plan.Start;
        var segs = plan.Segs;
        // the backend's rotary table covers the whole cache now rather than growing during the steps
        if (cache is not null && C.RotaryDim > 0) B.ReserveRope(cache.Capacity, C.RotaryDim, C.RopeTheta);
        var interventions = o.Interventions ?? [];
        bool keep = o.KeepForBackward;
        var keysAt = o.CaptureKeysAt is { } ka ? new HashSet<int>(ka) : null;
        var temps = keep ? new List<Tensor>() : null;
        // keep: fresh tensors owned by the tape; inference: the reusable scratch slot. One overload
        // per rank rather than params int[]: a decode step would allocate an array per activation.
        Tensor New1(string slot, int n) => keep ? Fresh(temps!, n) : Scratch(slot, 1, n);
        Tensor New(string slot, int rows, int cols) => keep ? Fresh(temps!, rows, cols) : Scratch(slot, 2, rows, cols);

        var hidden = o.CaptureHidden ? new Tensor[C.Layers + 1] : null;
        var keys = keysAt is null ? null : new Dictionary<int, Tensor>();
        var tape = keep ? new Tape { Blocks = new BlockTape[C.Layers], StartAtLayer = start, Interventions = interventions, Owned = temps! } : null;

        Tensor x;
        if (start == 0)
        {
            // x [T, d] = wte[ids] (+ wpe[pos]); with segments pos restarts at 0 in each
            x = New("x0", T, d);
            if (segs is null || P.Wpe is null) B.Embed(ids, P.Wte, P.Wpe, pos0, x);
            else EmbedSegments(ids, segs, x);
        }
        else
        {
            // x [T, d] = a copy of StartResidual, in the slot block `start` reads in a full run:
            // ResidualIn interventions add in place, and the caller's tensor must stay as it was
            x = New(start % 2 == 0 ? "x0" : "x1", T, d);
            B.CopyRows(o.StartResidual!, 0, x, 0, T);
        }

        for (int l = start; l < C.Layers; l++)
        {
            var bp = P.Blocks[l];
            Apply(interventions, l, InterventionSite.ResidualIn, x);
            if (hidden is not null) hidden[l] = Copy(x);
            var bt = keep ? new BlockTape() : _block;
            bt.X = x;

            // attention branch: aIn = norm1(x); q, k, v = aIn·W + b; rotary; attention; · Wo + bo
            bt.AIn = New("aIn", T, d); bt.Mean1 = New1("mean1", T); bt.Rstd1 = New1("rstd1", T);
            Norm(x, bp.Ln1G, bp.Ln1B, bt.AIn, bt.Mean1, bt.Rstd1);
            bt.Q = New("q", T, C.QDim); bt.K = New("k", T, C.KvDim); bt.V = New("v", T, C.KvDim);
            F.Linear3(bt.AIn, bp.Wq, bp.Bq, bt.Q, bp.Wk, bp.Bk, bt.K, bp.Wv, bp.Bv, bt.V);
            bt.Att = New("att", T, C.QDim);
            if (segs is not null) AttendSegments(bt, segs, keep ? temps : null);
            else
            {
                Rotate(bt.Q, bt.K, pos0, inverse: false);
                bt.Probs = keep ? Fresh(temps!, C.Heads, T, T) : null!;
                if (cache is null) B.Attention(bt.Q, bt.K, bt.V, C.Heads, C.KvHeads, C.HeadDim, bt.Att, keep ? bt.Probs : null);
                else
                {
                    // append k, v; att [T, H·hd] over the cache's rows [0, pos0 + T), read in place
                    // (a RowPrefix view per layer would allocate at every step)
                    B.CopyRows(bt.K, 0, cache.K[l], pos0, T);
                    B.CopyRows(bt.V, 0, cache.V[l], pos0, T);
                    B.AttentionPrefix(bt.Q, cache.K[l], cache.V[l], pos0 + T, C.Heads, C.KvHeads, C.HeadDim, bt.Att, keep ? bt.Probs : null);
                }
            }
            // sequential blocks with nothing to do on attn_out fuse it into h = x + attn_out
            bool fuseO = !C.ParallelResidual && !At(interventions, l, InterventionSite.AttnOutput);
            Tensor? attnOut = null;
            if (!fuseO)
            {
                attnOut = Linear(bt.Att, bp.Wo, bp.Bo, New("attnOut", T, d));
                Apply(interventions, l, InterventionSite.AttnOutput, attnOut);
            }

            // MLP input: parallel blocks read x (GPT-J: the same norm), sequential ones x + attn.
            Tensor residual;
            if (C.ParallelResidual)
            {
                residual = x;
                if (C.SharedNorm) bt.MIn = bt.AIn;
                else { bt.MIn = New("mIn", T, d); bt.Mean2 = New1("mean2", T); bt.Rstd2 = New1("rstd2", T); Norm(x, bp.Ln2G!, bp.Ln2B, bt.MIn, bt.Mean2, bt.Rstd2); }
            }
            else
            {
                bt.H = New("h", T, d);
                if (fuseO) F.Linear(bt.Att, bp.Wo, bp.Bo, bt.H, residual: x);
                else B.Add(x, attnOut!, bt.H);
                residual = bt.H;
                bt.MIn = New("mIn", T, d); bt.Mean2 = New1("mean2", T); bt.Rstd2 = New1("rstd2", T);
                Norm(bt.H, bp.Ln2G!, bp.Ln2B, bt.MIn, bt.Mean2, bt.Rstd2);
            }

            // MLP: key = act(mIn·WUp + b) or silu(mIn·WGate)·(mIn·WUp); out = key·WDown + b
            bt.Up = New("up", T, f);
            bt.Key = keysAt?.Contains(l) == true ? B.Zeros(T, f) : New("key", T, f);
            if (C.GatedMlp)
            {
                Linear(bt.MIn, bp.WUp, bp.BUp, bt.Up);
                bt.Gate = Linear(bt.MIn, bp.WGate!, null, New("gate", T, f));
                B.SiluMul(bt.Gate, bt.Up, bt.Key);
            }
            else F.LinearAct(C.Act, bt.MIn, bp.WUp, bp.BUp, bt.Up, bt.Key);
            if (keysAt?.Contains(l) == true) keys![l] = bt.Key;
            // x_{l+1} = residual + mlp_out (+ attn_out when parallel); fused when nothing acts on mlp_out
            var next = New((l + 1) % 2 == 0 ? "x0" : "x1", T, d);
            bool adaptorHere = Adaptor is { } ad && ad.Layer == l;
            if (!C.ParallelResidual && !adaptorHere && !At(interventions, l, InterventionSite.MlpOutput))
                F.Linear(bt.Key, bp.WDown, bp.BDown, next, residual);
            else
            {
                var mlpOut = Linear(bt.Key, bp.WDown, bp.BDown, New("mlpOut", T, d));
                if (adaptorHere)
                    Adaptor!.Apply(B, cache is null ? [] : cache.Tokens.AsSpan(0, pos0), ids, segs?.Lengths, bt.Key, mlpOut);
                Apply(interventions, l, InterventionSite.MlpOutput, mlpOut);
                B.Add(residual, mlpOut, next);
                if (C.ParallelResidual) B.Add(next, attnOut!, next);
            }
            Apply(interventions, l, InterventionSite.BlockOutput, next);
            if (tape is not null) tape.Blocks[l] = bt;
            x = next;
            if (l == o.StopAfterLayer)
                return new ForwardResult { MlpKeys = keys ?? new Dictionary<int, Tensor>(), Residual = o.ReturnResidual ? Copy(x) : null, Ids = ids.ToArray(), PositionOffset = pos0, Segments = segs?.Lengths };
        }

        // final norm and head: logits [T, V] = norm_f(x) · Headᵀ (+ b)
        var xf = New("xf", T, d); var meanF = New1("meanF", T); var rstdF = New1("rstdF", T);
        Norm(x, P.LnFG, P.LnFB, xf, meanF, rstdF);
        Tensor? finalResidual = null;
        if (hidden is not null) { hidden[C.Layers] = Copy(xf); finalResidual = Copy(x); }
        int from = plan.LogitsFrom;
        int[]? rows = plan.LogitRows;
        var xHead = xf;
        if (rows is not null)
        {
            // gather the requested rows: xHead [R, d] = xf[rows]
            xHead = New("xHead", rows.Length, d);
            for (int i = 0; i < rows.Length; i++) B.CopyRows(xf, rows[i], xHead, i, 1);
        }
        else if (from > 0) { xHead = New("xHead", T - from, d); B.CopyRows(xf, from, xHead, 0, T - from); }
        var logits = logitsInto ?? B.Zeros(rows?.Length ?? T - from, C.Vocab);
        B.MatMul(xHead, false, P.Head, true, logits);
        if (P.HeadB is not null) B.AddBias(logits, P.HeadB);
        if (cache is not null)
        {
            ids.CopyTo(cache.Tokens.AsSpan(pos0));
            cache.Length = pos0 + T;
        }

        if (tape is not null)
        {
            tape.XL = x; tape.XF = xf; tape.XHead = xHead; tape.MeanF = meanF; tape.RstdF = rstdF;
        }

        if (logitsInto is not null) return null; // ForwardLast: the caller owns the logits, nothing else was asked
        return new ForwardResult { Logits = logits, Hidden = hidden, FinalResidual = finalResidual, MlpKeys = keys ?? new Dictionary<int, Tensor>(), Tape = tape, Ids = ids.ToArray(), PositionOffset = pos0, LogitsFrom = from, LogitRows = rows, Segments = segs?.Lengths };
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
        int T = fr.Ids.Length, d = C.DModel, f = C.DFf;
        var ivs = tape.Interventions;
        if (interventionGrads is not null && interventionGrads.Count != ivs.Count)
            throw new ArgumentException($"{interventionGrads.Count} gradient vectors for {ivs.Count} interventions");
        if (weightGrads is not null && tape.StartAtLayer > 0)
            throw new ArgumentException($"weight gradients need the whole forward, and this one started at StartAtLayer {tape.StartAtLayer}: the blocks below it and the embedding kept no activations");
        var G = weightGrads;
        var temps = new List<Tensor>();
        Tensor New(params int[] shape) { var t = B.Zeros(shape); temps.Add(t); return t; }
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
        var segGrads = segs is null || PackedAttention is not null ? null : new[] { New(segs.Max, C.QDim), New(segs.Max, C.QDim), New(segs.Max, C.KvDim), New(segs.Max, C.KvDim) };

        try
        {
            // head: dxf [R, d] = dlogits [R, V] · Head; dHead [V, d] += dlogitsᵀ · xf (rows R = T − from)
            int from = fr.LogitsFrom, R = fr.LogitRows?.Length ?? T - from;
            if (dlogits.Rows != R || dlogits.Cols != C.Vocab) throw new ArgumentException($"dlogits {dlogits} does not match logits {fr.Logits}");
            var dxHead = New(R, d);
            B.MatMul(dlogits, false, P.Head, false, dxHead);
            if (G is not null)
            {
                B.MatMul(dlogits, true, tape.XHead, false, G.Head, accumulate: true);
                if (G.HeadB is not null) B.SumRows(dlogits, G.HeadB, accumulate: true);
            }
            var dxf = dxHead;
            if (fr.LogitRows is { } rs)
            {
                // scatter back: rows are distinct, the rest of dxf stays zero
                dxf = New(T, d);
                for (int i = 0; i < R; i++) B.CopyRows(dxHead, i, dxf, rs[i], 1);
            }
            else if (from > 0) { dxf = New(T, d); B.CopyRows(dxHead, 0, dxf, from, R); }
            var dx = New(T, d);
            NormBackward(dxf, tape.XL, P.LnFG, tape.MeanF, tape.RstdF, dx, G?.LnFG, G?.LnFB);

            for (int l = C.Layers - 1; l >= lowest; l--)
            {
                var bt = tape.Blocks[l]; var bp = P.Blocks[l]; var gb = G?.Blocks[l];
                // dx is d loss / d x_{l+1}: the gradient of the block output = of the MLP output.
                for (int i = 0; i < ivs.Count; i++)
                    if (ivs[i].Layer == l && ivs[i].Site is InterventionSite.MlpOutput or InterventionSite.BlockOutput && interventionGrads is not null)
                        B.GetRow(dx, ivs[i].Position, interventionGrads[i], accumulate: true);
                if (mlpOutputGrads is not null && mlpOutputGrads.TryGetValue(l, out var mlpGrad)) B.Add(mlpGrad, dx, mlpGrad);
                // Below this point the lowest block's backward feeds only weight gradients and
                // the interventions on its attention output or input: without them, stop here.
                if (l == lowest && G is null && !ivs.Any(iv => iv.Layer == l && iv.Site is InterventionSite.AttnOutput or InterventionSite.ResidualIn))
                    break;

                // MLP backward: dKey = dOut · WDownᵀ; then through the activation to dMIn.
                var dKey = New(T, f);
                LinearBackward(bt.Key, bp.WDown, dx, dKey, gb?.WDown, gb?.BDown);
                var dMIn = New(T, d);
                var dUp = New(T, f);
                if (C.GatedMlp)
                {
                    var dGate = New(T, f);
                    B.SiluMulBackward(bt.Gate!, bt.Up, dKey, dGate, dUp);
                    LinearBackward(bt.MIn, bp.WGate!, dGate, dMIn, gb?.WGate, null);
                }
                else B.ActivateBackward(C.Act, bt.Up, dKey, dUp);
                LinearBackward(bt.MIn, bp.WUp, dUp, dMIn, gb?.WUp, gb?.BUp, accumulateInput: C.GatedMlp);

                // Route dMIn to the attention input (GPT-J), to x (NeoX parallel), or to h (sequential).
                var dAIn = New(T, d);
                Tensor dAttnOut;   // d loss / d attn_out
                var dxPrev = New(T, d); // d loss / d x_l
                if (C.ParallelResidual)
                {
                    dAttnOut = dx;
                    B.Add(dxPrev, dx, dxPrev); // residual path
                    if (C.SharedNorm) B.Add(dAIn, dMIn, dAIn);
                    else NormBackward(dMIn, bt.X, bp.Ln2G!, bt.Mean2!, bt.Rstd2!, dxPrev, gb?.Ln2G, gb?.Ln2B);
                }
                else
                {
                    var dH = New(T, d);
                    B.Add(dH, dx, dH);
                    NormBackward(dMIn, bt.H, bp.Ln2G!, bt.Mean2!, bt.Rstd2!, dH, gb?.Ln2G, gb?.Ln2B);
                    dAttnOut = dH;
                    B.Add(dxPrev, dH, dxPrev);
                }

                for (int i = 0; i < ivs.Count; i++)
                    if (ivs[i].Layer == l && ivs[i].Site == InterventionSite.AttnOutput && interventionGrads is not null)
                        B.GetRow(dAttnOut, ivs[i].Position, interventionGrads[i], accumulate: true);

                // attention backward: dAtt = dAttnOut · Woᵀ; softmax; rotary (inverse); q, k, v projections.
                var dAtt = New(T, C.QDim);
                LinearBackward(bt.Att, bp.Wo, dAttnOut, dAtt, gb?.Wo, gb?.Bo);
                var dQ = New(T, C.QDim); var dK = New(T, C.KvDim); var dV = New(T, C.KvDim);
                if (segs is not null) AttendSegmentsBackward(bt, segs, segGrads!, dAtt, dQ, dK, dV);
                else
                {
                    B.AttentionBackward(dAtt, bt.Q, bt.K, bt.V, bt.Probs, C.Heads, C.KvHeads, C.HeadDim, dQ, dK, dV);
                    Rotate(dQ, dK, fr.PositionOffset, inverse: true);
                }
                LinearBackward(bt.AIn, bp.Wq, dQ, dAIn, gb?.Wq, gb?.Bq, accumulateInput: true);
                LinearBackward(bt.AIn, bp.Wk, dK, dAIn, gb?.Wk, gb?.Bk, accumulateInput: true);
                LinearBackward(bt.AIn, bp.Wv, dV, dAIn, gb?.Wv, gb?.Bv, accumulateInput: true);
                NormBackward(dAIn, bt.X, bp.Ln1G, bt.Mean1, bt.Rstd1, dxPrev, gb?.Ln1G, gb?.Ln1B);

                for (int i = 0; i < ivs.Count; i++)
                    if (ivs[i].Layer == l && ivs[i].Site == InterventionSite.ResidualIn && interventionGrads is not null)
                        B.GetRow(dxPrev, ivs[i].Position, interventionGrads[i], accumulate: true);
                dx = dxPrev;
            }
            // without learned positions the segments' positions do not matter to the embeddings
            if (G is not null && (segs is null || G.Wpe is null)) B.EmbedBackward(fr.Ids, dx, G.Wte, G.Wpe, fr.PositionOffset);
            else if (G is not null) EmbedSegmentsBackward(fr.Ids, segs!, dx, G, New(segs!.Max, d));
        }
        finally
        {
            foreach (var t in temps) t.Dispose();
        }
    }

    // rotary on q [n, H·hd] and k [n, Hkv·hd] from position pos0 (inverse: its transpose, for gradients); no-op without rotary
    private void Rotate(Tensor q, Tensor k, int pos0, bool inverse)
    {
        if (C.RotaryDim == 0) return;
        B.Rope(q, C.Heads, C.HeadDim, C.RotaryDim, C.RotaryInterleaved, C.RopeTheta, pos0, inverse);
        B.Rope(k, C.KvHeads, C.HeadDim, C.RotaryDim, C.RotaryInterleaved, C.RopeTheta, pos0, inverse);
    }

    private static bool At(IReadOnlyList<Intervention> interventions, int layer, InterventionSite site)
    {
        for (int i = 0; i < interventions.Count; i++) // indexed: foreach over the interface boxes an enumerator
            if (interventions[i].Layer == layer && interventions[i].Site == site) return true;
        return false;
    }

    /// <summary>Run the backend's own <see cref="IFusedLinear"/> (off: the plain composition, <see cref="ComposedLinear"/>; the GPU benchmark compares the two).</summary>
    internal bool UseFusedLinear { get; set; } = true;
    private ComposedLinear? _composed;

    // The linear layers whose epilogues (bias, residual, activation) may fuse: the backend decides how.
    private IFusedLinear F => UseFusedLinear ? B : _composed ??= new ComposedLinear(B);

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

    // y [T, out] = x [T, in] · W [in, out] (+ b [out]), op by op on every backend: the products with
    // no epilogue to fuse (something reads y before it joins the residual stream; SwiGLU's two).
    // Not F.Linear without a residual: CUDA would fold a one-row product's bias into its gemv
    // launch, a different launch sequence from the one its recorded graphs and timings have.
    private Tensor Linear(Tensor x, Tensor w, Tensor? b, Tensor y)
    {
        B.MatMul(x, false, w, false, y);
        if (b is not null) B.AddBias(y, b);
        return y;
    }

    // dx [T, in] (+)= dy [T, out] · Wᵀ; dW [in, out] += xᵀ · dy; db [out] += Σ_t dy
    private void LinearBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, Tensor? dw, Tensor? db, bool accumulateInput = false)
    {
        B.MatMul(dy, false, w, true, dx, accumulateInput);
        if (dw is not null) B.MatMul(x, true, dy, false, dw, accumulate: true);
        if (db is not null) B.SumRows(dy, db, accumulate: true);
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
