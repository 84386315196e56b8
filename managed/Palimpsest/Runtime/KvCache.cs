using Palimpsest.Backends;
using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

/// <summary>
/// Keys and values of every layer for the tokens seen so far, for incremental decoding.
/// <see cref="Capacity"/> is the most tokens it takes (positions [0, Capacity), at most the model's
/// context); how many of them a layer keeps depends on its attention:
/// - full attention: every one. K[l], V[l] [Capacity, Hkv·hd], row i = position i.
/// - a sliding window W (Mistral's layers, Qwen2's from max_window_layers), on a backend with
///   <see cref="IBackend.SlidingWindowAttention"/>: the latest only. K[l], V[l]
///   [min(Capacity, W − 1 + slack), Hkv·hd], row i = position First[l] + i. No later query reads a
///   key W − 1 or more positions before it, so these layers' memory does not grow with the
///   context: a Mistral model's cache costs O(W) rows per layer whatever its capacity.
/// On a backend without it (CUDA) every layer keeps every row, and slack changes nothing.
/// Allocated once: decoding a token allocates nothing here. How new rows go into a sliding layer,
/// and why it is not a ring of W rows, is in KvCache.Sliding.cs; what a forward that fails part way
/// leaves, in KvCache.Incomplete.cs.
/// </summary>
public sealed partial class KvCache : IDisposable
{
    private readonly IBackend _b;
    // [Layers]: layer l's window where it keeps only its latest rows, 0 where it keeps every row
    private readonly int[] _window;

    /// <param name="capacity">the most tokens the cache takes, at most the model's context: the rows of the full-attention layers.</param>
    /// <param name="slack">
    /// rows a sliding layer keeps beyond the W − 1 its next query reads (at least 1; default max(1, W / 4)). A forward
    /// of up to slack tokens keeps every row before it, so <see cref="Truncate"/> can rewind to where it began; a decode
    /// step moves the kept rows to the front once every slack steps. Capacity or more: every row, as before sliding layers
    /// had their own storage.
    /// </param>
    public KvCache(Model model, int capacity, int? slack = null)
    {
        var c = model.Config;
        if (capacity <= 0 || capacity > c.MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(capacity), $"KV cache capacity {capacity} must be in [1, {c.MaxPositions}] (the model's context)");
        if (slack < 1) throw new ArgumentOutOfRangeException(nameof(slack), $"KV cache slack {slack} must be at least 1 (a decode step's row)");
        _b = model.Backend;
        Capacity = capacity;
        Tokens = new int[capacity];
        K = new Tensor[c.Layers]; V = new Tensor[c.Layers];
        _window = new int[c.Layers];
        First = new int[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            int rows = capacity;
            if (c.AttentionWindow(l) is int w and > 0 && _b.SlidingWindowAttention)
            {
                long keep = w - 1L + (slack ?? Math.Max(1, w / 4));
                if (keep < capacity) { rows = (int)keep; _window[l] = w; }
            }
            K[l] = _b.Zeros(rows, c.KvDim);
            V[l] = _b.Zeros(rows, c.KvDim);
        }
    }

    /// <summary>The most tokens the cache takes (positions [0, Capacity)); a sliding layer keeps only the latest of them.</summary>
    public int Capacity { get; }
    /// <summary>Number of tokens seen: the next token is at this position.</summary>
    public int Length { get; internal set; }
    /// <summary>The token ids of positions [0, Length) (an <see cref="IMlpAdaptor"/> routes on them).</summary>
    internal int[] Tokens { get; }
    /// <summary>[Layers] × [rows, Hkv·hd]: layer l's keys and values, row i holding position First[l] + i.</summary>
    internal Tensor[] K { get; }
    internal Tensor[] V { get; }
    /// <summary>[Layers]: the position in row 0 of layer l (0 where a layer keeps every row).</summary>
    internal int[] First { get; }

    /// <summary>The rows layer l allocated for keys (as many for values): Capacity, or fewer on a sliding layer.</summary>
    public int Rows(int layer) => K[layer].Rows;

    /// <summary>The bytes the keys and values of every layer take.</summary>
    public long Bytes
    {
        get
        {
            long n = 0;
            for (int l = 0; l < K.Length; l++) n += K[l].Length * K[l].DType.Size() + V[l].Length * V[l].DType.Size();
            return n;
        }
    }

    /// <summary>
    /// The shortest length <see cref="Truncate"/> accepts now: 0 until a sliding layer drops a row, then the first
    /// position whose W − 1 earlier keys that layer still holds.
    /// </summary>
    public int TruncateFloor
    {
        get
        {
            int floor = 0;
            for (int l = 0; l < K.Length; l++)
                if (First[l] > 0) floor = Math.Max(floor, First[l] + _window[l] - 1);
            return floor;
        }
    }

    /// <summary>Forgets every token (keeps the memory).</summary>
    public void Reset()
    {
        Length = 0;
        Array.Clear(First);
        Incomplete = false;
    }

    /// <summary>
    /// Keeps the first `length` tokens and forgets the rest (a shared prompt prefix, a rewound benchmark). A sliding
    /// layer must still hold the keys the next token reads: `length` at least <see cref="TruncateFloor"/>, or 0 (as <see cref="Reset"/>).
    /// </summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length), $"cannot truncate a cache of {Length} tokens to {length}");
        if (length == 0) { Reset(); return; } // position 0 reads no keys: every layer can start over
        int floor = TruncateFloor;
        if (length < floor)
        {
            ThrowIfIncomplete(); // the reason it holds no such length
            throw new ArgumentOutOfRangeException(nameof(length), $"cannot truncate a cache of {Length} tokens to {length}: its sliding layers no longer hold "
                + $"the keys position {length} reads (the shortest length it can keep now is {floor}; a larger slack keeps more rows)");
        }
        Length = length;
        Incomplete = false; // every layer holds the keys position length reads
    }

    public void Dispose()
    {
        foreach (var t in K) t.Dispose();
        foreach (var t in V) t.Dispose();
    }
}
