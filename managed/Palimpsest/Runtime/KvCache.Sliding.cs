using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

// How a forward's new keys and values go into a layer's rows, and which rows its attention reads.
//
// A sliding layer keeps its rows contiguous and in position order rather than in a ring of W rows:
// attention then reads the keys its queries see as one block in the order a cache that keeps every
// row has them, so every float sum (the softmax's, p·V's) runs in the same order and the logits are
// bit-identical to that cache's. A ring would split the keys at its wrap point and round the sums
// differently. When the rows are full, the W − 1 that later queries still read move to the front:
// one copy of W − 1 rows per `slack` decode steps.
public sealed partial class KvCache
{
    // Where T new rows after position pos0 go in layer l:
    // Append: after the rows it holds (every full layer; a sliding layer with room left).
    // MoveThenAppend: after the Keep rows its queries see, moved to the front first (T ≤ slack).
    // Gather: they do not fit beside those (T > slack): attention reads them in place (after the Keep
    //   rows copied before them, GatherRows), and the layer keeps the last of them.
    private enum Placement { Append, MoveThenAppend, Gather }

    // Held: the rows layer l holds (positions First[l]..pos0 − 1); Keep: the last of them a query at pos0 or later sees.
    private (Placement How, int Held, int Keep) Place(int l, int pos0, int T)
    {
        int held = pos0 - First[l], rows = K[l].Rows;
        if (held + T <= rows) return (Placement.Append, held, held);
        if (_window[l] == 0) throw new ArgumentException($"KV cache holds {Capacity} tokens; {pos0 + T} needed");
        int keep = Math.Min(held, _window[l] - 1);
        return (keep + T <= rows ? Placement.MoveThenAppend : Placement.Gather, held, keep);
    }

    /// <summary>
    /// The rows of the keys (and of the values) [Keep + T, Hkv·hd] that layer l's attention reads from gathered
    /// copies for T new tokens after pos0: 0 unless a forward of more than slack tokens continues a sliding layer.
    /// </summary>
    internal int GatherRows(int l, int pos0, int T)
    {
        var (how, _, keep) = Place(l, pos0, T);
        return how == Placement.Gather && keep > 0 ? keep + T : 0;
    }

    /// <summary>
    /// Puts k, v [T, Hkv·hd] (positions pos0.., rotated) into layer l, and returns what its attention reads: keys and
    /// values [≥ S, Hkv·hd] whose rows [0, S) hold positions pos0 + T − S .. pos0 + T − 1, every key the T queries see
    /// (and at most the earlier ones the layer holds). They are the layer's own rows, or k and v themselves, or gk, gv
    /// [<see cref="GatherRows"/>, Hkv·hd] (null when that is 0) filled here. Only the positions are asked: the caller
    /// sets <see cref="Length"/> once every layer has its rows.
    /// </summary>
    internal (Tensor K, Tensor V, int S) Append(int l, Tensor k, Tensor v, int pos0, Tensor? gk, Tensor? gv)
    {
        int T = k.Rows, rows = K[l].Rows;
        var (how, held, keep) = Place(l, pos0, T);
        if (how == Placement.MoveThenAppend)
        {
            // rows [held − keep, held) to [0, keep); the ranges may overlap: CopyRows copies as memmove does on the
            // CPU backends, the only ones with SlidingWindowAttention
            _b.CopyRows(K[l], held - keep, K[l], 0, keep);
            _b.CopyRows(V[l], held - keep, V[l], 0, keep);
            First[l] = pos0 - keep;
        }
        if (how != Placement.Gather)
        {
            _b.CopyRows(k, 0, K[l], keep, T);
            _b.CopyRows(v, 0, V[l], keep, T);
            return (K[l], V[l], keep + T);
        }
        // the rows below are about to hold only the last of the new positions, not the keys position pos0 reads:
        // should the forward fail before Commit, the cache must not go on as if it held pos0 tokens (KvCache.Incomplete.cs)
        Incomplete = true;
        Tensor ak = k, av = v; // ak, av [keep + T, Hkv·hd]: the kept rows, then the new ones
        if (keep > 0)
        {
            if (gk is null || gv is null || gk.Rows < keep + T || gv.Rows < keep + T)
                throw new ArgumentException($"KvCache.Append: layer {l} gathers {keep + T} rows of keys and values; got {gk} and {gv}");
            _b.CopyRows(K[l], held - keep, gk, 0, keep); _b.CopyRows(k, 0, gk, keep, T);
            _b.CopyRows(V[l], held - keep, gv, 0, keep); _b.CopyRows(v, 0, gv, keep, T);
            ak = gk; av = gv;
        }
        // the layer keeps the last `rows` of them (more than the W − 1 the next query reads: keep + T > rows ≥ W)
        _b.CopyRows(ak, keep + T - rows, K[l], 0, rows);
        _b.CopyRows(av, keep + T - rows, V[l], 0, rows);
        First[l] = pos0 + T - rows;
        return (ak, av, keep + T);
    }
}
