using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

// One block's forward and backward (llm.c's gpt2_forward / gpt2_backward per layer, nanoGPT's
// Block), for every architecture: sequential or parallel residual (GPT-J shares the first norm),
// plain or gated MLP, rotary or learned positions.
public sealed partial class Transformer
{
    /// <summary>
    /// What the blocks of one forward share: its ids [T] at positions Pos0.. (the cache's length),
    /// the cache, the packed segments and the interventions, and where its activations live: Owned
    /// (KeepForBackward) holds fresh tensors that the tape owns, else they are the transformer's
    /// scratch slots, which the next forward reuses. A ref struct: it holds the ids, and a decode
    /// step allocates nothing.
    /// </summary>
    private readonly ref struct ForwardPass
    {
        public ForwardPass(Transformer tf, ReadOnlySpan<int> ids, KvCache? cache, Segs? segs, IReadOnlyList<Intervention> interventions, List<Tensor>? owned)
        {
            _tf = tf; Ids = ids; Pos0 = cache?.Length ?? 0; Cache = cache; Segs = segs; Interventions = interventions; Owned = owned;
        }

        private readonly Transformer _tf;
        public readonly ReadOnlySpan<int> Ids;
        public readonly int Pos0;
        public readonly KvCache? Cache;
        public readonly Segs? Segs;
        public readonly IReadOnlyList<Intervention> Interventions;
        public readonly List<Tensor>? Owned;

        public int T => Ids.Length;

        /// <summary>The tokens before Ids: the cache's (the adaptor reads them), none without one.</summary>
        public ReadOnlySpan<int> History => Cache is null ? [] : Cache.Tokens.AsSpan(0, Pos0);

        // An activation [rows, cols] or [n]. One overload per rank rather than params int[]: a
        // decode step would allocate an array per activation.
        public Tensor New(string slot, int rows, int cols) => Owned is null ? _tf.Scratch(slot, 2, rows, cols) : _tf.Fresh(Owned, rows, cols);
        public Tensor New1(string slot, int n) => Owned is null ? _tf.Scratch(slot, 1, n) : _tf.Fresh(Owned, n);
    }

    /// <summary>
    /// Block l: x [T, d] -> x_{l+1} [T, d], a new activation (x itself is not written). bt receives
    /// what the backward reads. captureKey: the MLP key [T, f] goes into a tensor of its own, the
    /// caller's to return.
    /// </summary>
    private Tensor BlockForward(int l, Tensor x, BlockTape bt, in ForwardPass p, bool captureKey)
    {
        var bp = P.Blocks[l];
        int T = p.T, d = C.DModel, f = C.DFf;
        bt.X = x;

        // attention: aIn = norm1(x); q, k, v = aIn · W + b; att = attention(rotary(q), rotary(k), v)
        bt.AIn = p.New("aIn", T, d); bt.Mean1 = p.New1("mean1", T); bt.Rstd1 = p.New1("rstd1", T);
        Norm(x, bp.Ln1G, bp.Ln1B, bt.AIn, bt.Mean1, bt.Rstd1);                          // aIn [T, d]
        bt.Q = p.New("q", T, C.QDim); bt.K = p.New("k", T, C.KvDim); bt.V = p.New("v", T, C.KvDim);
        F.Linear3(bt.AIn, bp.Wq, bp.Bq, bt.Q, bp.Wk, bp.Bk, bt.K, bp.Wv, bp.Bv, bt.V);  // q [T, H·hd]; k, v [T, Hkv·hd]
        bt.Att = p.New("att", T, C.QDim);
        Attend(l, bt, p);                                                                // att [T, H·hd]

        // attn_out = att · Wo + bo is a tensor of its own where something reads it (an intervention,
        // a parallel block's last sum); else a sequential block adds x in the same op (h below)
        Tensor? attnOut = null;
        if (C.ParallelResidual || At(p.Interventions, l, InterventionSite.AttnOutput))
        {
            attnOut = p.New("attnOut", T, d);
            F.Linear(bt.Att, bp.Wo, bp.Bo, attnOut);                                     // attn_out [T, d]
            Apply(p.Interventions, l, InterventionSite.AttnOutput, attnOut);
        }

        // MLP input: mIn = norm2(h), h = x + attn_out (sequential); parallel blocks norm x (GPT-J: mIn = aIn)
        var residual = x;
        if (!C.ParallelResidual)
        {
            residual = bt.H = p.New("h", T, d);
            if (attnOut is null) F.Linear(bt.Att, bp.Wo, bp.Bo, bt.H, residual: x);      // h [T, d] = x + att · Wo + bo
            else B.Add(x, attnOut, bt.H);                                                // h [T, d] = x + attn_out
        }
        if (C.ParallelResidual && C.SharedNorm) bt.MIn = bt.AIn;
        else
        {
            bt.MIn = p.New("mIn", T, d); bt.Mean2 = p.New1("mean2", T); bt.Rstd2 = p.New1("rstd2", T);
            Norm(residual, bp.Ln2G!, bp.Ln2B, bt.MIn, bt.Mean2, bt.Rstd2);              // mIn [T, d]
        }

        // MLP: key = act(mIn · WUp + b), or silu(mIn · WGate) · (mIn · WUp + b) when gated
        bt.Up = p.New("up", T, f);
        bt.Key = captureKey ? B.Zeros(T, f) : p.New("key", T, f);
        if (C.GatedMlp)
        {
            F.Linear(bt.MIn, bp.WUp, bp.BUp, bt.Up);                                     // up [T, f]
            bt.Gate = p.New("gate", T, f);
            F.Linear(bt.MIn, bp.WGate!, null, bt.Gate);                                  // gate [T, f]
            B.SiluMul(bt.Gate, bt.Up, bt.Key);                                           // key [T, f]
        }
        else F.LinearAct(C.Act, bt.MIn, bp.WUp, bp.BUp, bt.Up, bt.Key);                 // up, key [T, f]

        // x_{l+1} = residual + mlp_out, mlp_out = key · WDown + b: one op unless something reads
        // mlp_out (the adaptor, an intervention) or attn_out is still to come (parallel blocks)
        var next = p.New((l + 1) % 2 == 0 ? "x0" : "x1", T, d);
        bool adaptor = Adaptor is { } ad && ad.Layer == l;
        if (!C.ParallelResidual && !adaptor && !At(p.Interventions, l, InterventionSite.MlpOutput))
        {
            F.Linear(bt.Key, bp.WDown, bp.BDown, next, residual);                       // x_{l+1} [T, d]
            return next;
        }
        var mlpOut = p.New("mlpOut", T, d);
        F.Linear(bt.Key, bp.WDown, bp.BDown, mlpOut);                                    // mlp_out [T, d]
        if (adaptor) Adaptor!.Apply(B, p.History, p.Ids, p.Segs?.Lengths, bt.Key, mlpOut);
        Apply(p.Interventions, l, InterventionSite.MlpOutput, mlpOut);
        B.Add(residual, mlpOut, next);                                                   // x_{l+1} [T, d] = residual + mlp_out
        if (C.ParallelResidual) B.Add(next, attnOut!, next);                             //   + attn_out
        return next;
    }

    // att [T, H·hd] = causal attention of q over k, v rotated from position Pos0: over the cache's
    // keys up to Pos0 + T once k, v are appended to it; with segments within each (AttendSegments);
    // on a sliding layer only the last C.AttentionWindow(l) keys of each query's (the cache keeps no more).
    private void Attend(int l, BlockTape bt, in ForwardPass p)
    {
        if (p.Segs is not null)
        {
            AttendSegments(l, bt, p.Segs, p.Owned);
            return;
        }
        Rotate(bt.Q, bt.K, p.Pos0, inverse: false);
        var probs = p.Owned is null ? null : Fresh(p.Owned, C.Heads, p.T, p.T);        // probs [H, T, T] for the backward
        bt.Probs = probs!;
        if (p.Cache is not { } cache)
        {
            B.Attention(bt.Q, bt.K, bt.V, C.Heads, C.KvHeads, C.HeadDim, bt.Att, probs, C.AttentionWindow(l));
            return;
        }
        // k, v [≥ S, Hkv·hd], rows [0, S): the keys up to Pos0 + T that the layer holds, read in place (a
        // RowPrefix view per layer would allocate at every step); gathered copies only when a forward of many
        // tokens continues a sliding layer's rows (KvCache.Sliding.cs)
        int g = cache.GatherRows(l, p.Pos0, p.T);
        var (k, v, S) = cache.Append(l, bt.K, bt.V, p.Pos0, g == 0 ? null : p.New("kvK", g, C.KvDim), g == 0 ? null : p.New("kvV", g, C.KvDim));
        B.AttentionPrefix(bt.Q, k, v, S, C.Heads, C.KvHeads, C.HeadDim, bt.Att, probs, C.AttentionWindow(l));
    }

    /// <summary>
    /// What the blocks of one backward share: T, the forward's position offset and interventions,
    /// the interventions' gradients (Grads[i] for Interventions[i], or null), the segments (SegGrads:
    /// dO_s, dq_s, dk_s, dv_s when they attend one by one) and the temporaries, freed at the end.
    /// </summary>
    private readonly struct BackwardPass(Transformer tf, List<Tensor> temps, int t, int positionOffset,
        IReadOnlyList<Intervention> interventions, IReadOnlyList<Tensor>? grads, Segs? segs, Tensor[]? segGrads)
    {
        public int T => t;
        public int PositionOffset => positionOffset;
        public IReadOnlyList<Intervention> Interventions => interventions;
        public IReadOnlyList<Tensor>? Grads => grads;
        public Segs? Segs => segs;
        public Tensor[]? SegGrads => segGrads;

        public Tensor New(params int[] shape) => tf.Fresh(temps, shape);
    }

    /// <summary>
    /// Backward of block l: dx [T, d] = d loss / d x_{l+1} -> d loss / d x_l [T, d]. Weight
    /// gradients accumulate into gb (optional); the interventions on attn_out and on the block's
    /// input receive theirs.
    /// </summary>
    private Tensor BlockBackward(int l, BlockTape bt, Tensor dx, BlockParams<Tensor>? gb, in BackwardPass p)
    {
        var bp = P.Blocks[l];
        int T = p.T, d = C.DModel, f = C.DFf;

        // MLP: dKey = dx · WDownᵀ; through the activation (or SwiGLU) to dUp (dGate); to dMIn
        var dKey = p.New(T, f);
        F.LinearBackward(bt.Key, bp.WDown, dx, dKey, gb?.WDown, gb?.BDown);              // dKey [T, f]
        var dMIn = p.New(T, d);
        var dUp = p.New(T, f);
        if (C.GatedMlp)
        {
            var dGate = p.New(T, f);
            B.SiluMulBackward(bt.Gate!, bt.Up, dKey, dGate, dUp);                       // dGate, dUp [T, f]
            F.LinearBackward(bt.MIn, bp.WGate!, dGate, dMIn, gb?.WGate, null);           // dMIn [T, d] = dGate · WGateᵀ
        }
        else B.ActivateBackward(C.Act, bt.Up, dKey, dUp);                               // dUp [T, f]
        F.LinearBackward(bt.MIn, bp.WUp, dUp, dMIn, gb?.WUp, gb?.BUp, accumulateInput: C.GatedMlp); // dMIn [T, d] (+)= dUp · WUpᵀ

        // Route dMIn to the attention input (GPT-J), to x (NeoX parallel), or to h (sequential).
        var dAIn = p.New(T, d);
        Tensor dAttnOut;          // d loss / d attn_out
        var dxPrev = p.New(T, d); // d loss / d x_l
        if (C.ParallelResidual)
        {
            dAttnOut = dx;
            B.Add(dxPrev, dx, dxPrev); // residual path
            if (C.SharedNorm) B.Add(dAIn, dMIn, dAIn);
            else NormBackward(dMIn, bt.X, bp.Ln2G!, bt.Mean2!, bt.Rstd2!, dxPrev, gb?.Ln2G, gb?.Ln2B);
        }
        else
        {
            var dH = p.New(T, d);
            B.Add(dH, dx, dH);
            NormBackward(dMIn, bt.H, bp.Ln2G!, bt.Mean2!, bt.Rstd2!, dH, gb?.Ln2G, gb?.Ln2B);
            dAttnOut = dH;
            B.Add(dxPrev, dH, dxPrev);
        }
        AddInterventionGrads(p, l, dAttnOut, InterventionSite.AttnOutput);

        // attention: dAtt = dAttnOut · Woᵀ; softmax; rotary (inverse); q, k, v projections; norm1
        var dAtt = p.New(T, C.QDim);
        F.LinearBackward(bt.Att, bp.Wo, dAttnOut, dAtt, gb?.Wo, gb?.Bo);                 // dAtt [T, H·hd]
        var dQ = p.New(T, C.QDim); var dK = p.New(T, C.KvDim); var dV = p.New(T, C.KvDim);
        if (p.Segs is not null) AttendSegmentsBackward(l, bt, p.Segs, p.SegGrads!, dAtt, dQ, dK, dV);
        else
        {
            B.AttentionBackward(dAtt, bt.Q, bt.K, bt.V, bt.Probs, C.Heads, C.KvHeads, C.HeadDim, dQ, dK, dV, C.AttentionWindow(l)); // dQ [T, H·hd]; dK, dV [T, Hkv·hd]
            Rotate(dQ, dK, p.PositionOffset, inverse: true);
        }
        F.LinearBackward(bt.AIn, bp.Wq, dQ, dAIn, gb?.Wq, gb?.Bq, accumulateInput: true); // dAIn [T, d] += dQ · Wqᵀ
        F.LinearBackward(bt.AIn, bp.Wk, dK, dAIn, gb?.Wk, gb?.Bk, accumulateInput: true); //   + dK · Wkᵀ
        F.LinearBackward(bt.AIn, bp.Wv, dV, dAIn, gb?.Wv, gb?.Bv, accumulateInput: true); //   + dV · Wvᵀ
        NormBackward(dAIn, bt.X, bp.Ln1G, bt.Mean1, bt.Rstd1, dxPrev, gb?.Ln1G, gb?.Ln1B); // dxPrev [T, d] += ∂ norm1
        AddInterventionGrads(p, l, dxPrev, InterventionSite.ResidualIn);
        return dxPrev;
    }
}
