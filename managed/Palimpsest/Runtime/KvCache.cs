using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

/// <summary>
/// Keys and values of every layer for the tokens seen so far, for incremental decoding.
/// K[l], V[l] [capacity, Hkv·hd] on the model's backend; rows [0, Length) are filled.
/// Allocated once: decoding a token allocates nothing here. Every row is kept, sliding layers
/// included: their attention reads only the last window rows (a ring buffer of window rows
/// would save memory on those layers at long contexts).
/// </summary>
public sealed class KvCache : IDisposable
{
    public KvCache(Model model, int capacity)
    {
        var c = model.Config;
        if (capacity <= 0 || capacity > c.MaxPositions)
            throw new ArgumentOutOfRangeException(nameof(capacity), $"KV cache capacity {capacity} must be in [1, {c.MaxPositions}] (the model's context)");
        Capacity = capacity;
        Tokens = new int[capacity];
        K = new Tensor[c.Layers]; V = new Tensor[c.Layers];
        for (int l = 0; l < c.Layers; l++)
        {
            K[l] = model.Backend.Zeros(capacity, c.KvDim);
            V[l] = model.Backend.Zeros(capacity, c.KvDim);
        }
    }

    public int Capacity { get; }
    /// <summary>Number of tokens whose keys and values are stored.</summary>
    public int Length { get; internal set; }
    /// <summary>The token ids of rows [0, Length) (an <see cref="IMlpAdaptor"/> routes on them).</summary>
    internal int[] Tokens { get; }
    internal Tensor[] K { get; }
    internal Tensor[] V { get; }

    /// <summary>Forgets every token (keeps the memory).</summary>
    public void Reset() => Length = 0;

    /// <summary>Keeps the first `length` tokens and forgets the rest (a shared prompt prefix, a rewound benchmark).</summary>
    public void Truncate(int length)
    {
        if (length < 0 || length > Length) throw new ArgumentOutOfRangeException(nameof(length), $"cannot truncate a cache of {Length} tokens to {length}");
        Length = length;
    }

    public void Dispose()
    {
        foreach (var t in K) t.Dispose();
        foreach (var t in V) t.Dispose();
    }
}
