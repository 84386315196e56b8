using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

// Packed segments (ForwardOptions.Segments): independent sequences laid end to end in one [T, ·],
// each at positions from 0 and attending only within itself.
public sealed partial class Transformer
{
    // x [T, d] = wte[ids] + wpe[position within the segment]: each segment through x_s [n_s, d]
    private void EmbedSegments(ReadOnlySpan<int> ids, Segs segs, Tensor x)
    {
        var xs = Scratch("segX", [segs.Max, C.DModel]);
        for (int s = 0; s < segs.Lengths.Length; s++)
        {
            int at = segs.Starts[s], n = segs.Lengths[s];
            var v = B.RowPrefix(xs, n);
            B.Embed(ids.Slice(at, n), P.Wte, P.Wpe, 0, v);
            B.CopyRows(v, 0, x, at, n);
        }
    }

    // Backward of EmbedSegments: dx [T, d] -> G.Wte, G.Wpe (accumulated), positions restarting at 0
    // in each segment, through dxs [max n_s, d]
    private void EmbedSegmentsBackward(int[] ids, Segs segs, Tensor dx, ParamSet<Tensor> G, Tensor dxs)
    {
        for (int s = 0; s < segs.Lengths.Length; s++)
        {
            int at = segs.Starts[s], n = segs.Lengths[s];
            var v = B.RowPrefix(dxs, n);
            B.CopyRows(dx, at, v, 0, n);
            B.EmbedBackward(ids.AsSpan(at, n), v, G.Wte, G.Wpe, 0);
        }
    }

    // Attention of packed segments: bt.Q [T, H·hd], bt.K, bt.V [T, Hkv·hd] (before rotary) -> bt.Att [T, H·hd].
    // Segment s copies its rows into q_s [n_s, H·hd], k_s, v_s [n_s, Hkv·hd], rotates them from
    // position 0, and attends causally within itself (probs_s [H, n_s, n_s]); o_s [n_s, H·hd] goes
    // back to its rows of Att. owned (KeepForBackward): q_s, k_s, v_s and probs_s are fresh tensors
    // kept in bt for the backward; else they are views of reused scratch and no probs are kept.
    // Layer l's sliding window applies within each segment.
    private void AttendSegments(int l, BlockTape bt, Segs segs, List<Tensor>? owned)
    {
        if (PackedAttention is { } sa)
        {
            // one call for all segments: probs [H, T, T] (0 outside each segment) serve the plain backward
            int T = bt.Q.Rows;
            if (owned is not null) { bt.Probs = B.Zeros(C.Heads, T, T); owned.Add(bt.Probs); }
            sa.AttentionSegments(bt.Q, bt.K, bt.V, segs.Lengths, C.Heads, C.KvHeads, C.HeadDim, bt.Att, owned is null ? null : bt.Probs);
            return;
        }
        int S = segs.Lengths.Length, max = segs.Max;
        Tensor Temp(string slot, int n, int cols)
        {
            if (owned is null) return B.RowPrefix(Scratch(slot, [max, cols]), n);
            var t = B.Zeros(n, cols); owned.Add(t); return t;
        }
        if (owned is not null) { bt.SegQ = new Tensor[S]; bt.SegK = new Tensor[S]; bt.SegV = new Tensor[S]; bt.SegProbs = new Tensor[S]; }
        var os = Scratch("segO", [max, C.QDim]);
        for (int s = 0; s < S; s++)
        {
            int at = segs.Starts[s], n = segs.Lengths[s];
            var q = Temp("segQ", n, C.QDim); var k = Temp("segK", n, C.KvDim); var v = Temp("segV", n, C.KvDim);
            B.CopyRows(bt.Q, at, q, 0, n);
            B.CopyRows(bt.K, at, k, 0, n);
            B.CopyRows(bt.V, at, v, 0, n);
            Rotate(q, k, 0, inverse: false);
            Tensor? probs = null;
            if (owned is not null)
            {
                probs = B.Zeros(C.Heads, n, n); owned.Add(probs);
                bt.SegQ![s] = q; bt.SegK![s] = k; bt.SegV![s] = v; bt.SegProbs![s] = probs;
            }
            var o = B.RowPrefix(os, n);
            B.Attention(q, k, v, C.Heads, C.KvHeads, C.HeadDim, o, probs, C.AttentionWindow(l));
            B.CopyRows(o, 0, bt.Att, at, n);
        }
    }

    // Backward of AttendSegments: dAtt [T, H·hd] -> dQ [T, H·hd], dK, dV [T, Hkv·hd] (overwritten; before
    // rotary, like the forward's bt.Q, bt.K), segment by segment through grads = dO_s, dq_s, dk_s, dv_s.
    private void AttendSegmentsBackward(int l, BlockTape bt, Segs segs, Tensor[] grads, Tensor dAtt, Tensor dQ, Tensor dK, Tensor dV)
    {
        if (bt.SegQ is null)
        {
            // packed forward (ISegmentAttention): probs [H, T, T], 0 between segments
            ((ISegmentAttention)B).AttentionSegmentsBackward(dAtt, bt.Q, bt.K, bt.V, bt.Probs, segs.Lengths, C.Heads, C.KvHeads, C.HeadDim, dQ, dK, dV);
            return;
        }
        for (int s = 0; s < segs.Lengths.Length; s++)
        {
            int at = segs.Starts[s], n = segs.Lengths[s];
            var dO = B.RowPrefix(grads[0], n); var dq = B.RowPrefix(grads[1], n);
            var dk = B.RowPrefix(grads[2], n); var dv = B.RowPrefix(grads[3], n);
            B.CopyRows(dAtt, at, dO, 0, n);
            B.AttentionBackward(dO, bt.SegQ![s], bt.SegK![s], bt.SegV![s], bt.SegProbs![s], C.Heads, C.KvHeads, C.HeadDim, dq, dk, dv, C.AttentionWindow(l));
            Rotate(dq, dk, 0, inverse: true);
            B.CopyRows(dq, 0, dQ, at, n);
            B.CopyRows(dk, 0, dK, at, n);
            B.CopyRows(dv, 0, dV, at, n);
        }
    }

    // The backend's one-call attention over packed segments, when it has one and the model has no
    // rotary embedding (rotary positions restart in each segment: those models rotate segment by
    // segment and so attend segment by segment too) and no sliding window (ISegmentAttention has
    // none; every windowed architecture is rotary anyway).
    private ISegmentAttention? PackedAttention => C.RotaryDim == 0 && C.SlidingWindow is null && UsePackedAttention ? B as ISegmentAttention : null;

    /// <summary>Use the backend's <see cref="ISegmentAttention"/> for packed segments when it has one (tests turn it off to compare).</summary>
    internal bool UsePackedAttention { get; set; } = true;

    /// <summary>Whether packed segments attend in one backend call (else segment by segment).</summary>
    internal bool AttendsPacked => PackedAttention is not null;
}

/// <summary>Packed segments: segment s is rows [Starts[s], Starts[s] + Lengths[s]) of every [T, ·]; Max = the longest.</summary>
internal sealed record Segs(int[] Lengths, int[] Starts, int Max)
{
    // Segments: lengths ≥ 1 summing to T; no KV cache (each segment starts at position 0).
    public static Segs Check(IReadOnlyList<int> lengths, int T, KvCache? cache)
    {
        if (cache is not null) throw new ArgumentException("Segments cannot be combined with a KV cache: every segment starts at position 0");
        if (lengths.Count == 0) throw new ArgumentException("Segments is empty");
        var starts = new int[lengths.Count];
        int at = 0;
        for (int s = 0; s < lengths.Count; s++)
        {
            if (lengths[s] < 1) throw new ArgumentException($"Segments[{s}] = {lengths[s]}: every segment needs at least one token");
            starts[s] = at;
            at += lengths[s];
        }
        if (at != T) throw new ArgumentException($"Segments sum to {at} tokens, the sequence has {T}");
        return new Segs(lengths.ToArray(), starts, lengths.Max());
    }
}
