namespace Palimpsest.Runtime;

/// <summary>
/// One sequence decoded token by token with its own KV cache: <see cref="Prefill"/> runs the prompt
/// once and picks the first new token, then each <see cref="Step"/> feeds the token just picked and
/// picks the next. A host streams tokens from it one at a time; <see cref="Generator"/> loops over it.
/// Buffers (the cache, the logits [1, V] on the backend and [V] on the host, the one-token input,
/// the sampler's scratch) are allocated once here, so a step reuses them: on the SimdBackend a warm
/// step (after the prefill and a step) allocates nothing on the managed heap. The ReferenceBackend
/// does not promise that (its attention reads the cache through RowPrefix views).
/// Not thread-safe; sessions on different transformers (each on its own backend instance, see
/// <see cref="Backends.ISiblingBackend"/>) can run on different threads at once.
/// </summary>
public sealed class DecodeSession : IDisposable
{
    private readonly Transformer _tf;
    private readonly KvCache _cache;
    private readonly Tensors.Tensor _deviceLogits; // [1, V]
    private readonly double[] _logits;              // [V]
    private readonly int[] _one = new int[1];
    private Sampling _sampling;
    private Random _rng;
    private int[] _top;          // [≥ k] top-k sampling's ids
    private double[] _weights;   // [≥ k] and their weights
    private readonly Func<int[]> _sequence; // Sequence, made once: a method group allocates a delegate per use

    /// <param name="capacity">
    /// prompt + new tokens, at most the model's context: the tokens the session takes. The cache's full-attention
    /// layers allocate that many rows, its sliding layers O(window) whatever it is (<see cref="KvCache"/>), so a
    /// Mistral model's session of its whole context costs about a window's rows per layer.
    /// </param>
    public DecodeSession(Transformer transformer, int capacity, Sampling? sampling = null)
    {
        _tf = transformer;
        _cache = new KvCache(transformer.Model, capacity);
        int V = transformer.Model.Config.Vocab;
        _deviceLogits = transformer.Model.Backend.Zeros(1, V);
        _logits = new double[V];
        _sampling = sampling ?? Sampling.Greedy;
        _rng = new Random(_sampling.Seed);
        int k = _sampling.TopK <= 0 ? 0 : Math.Min(_sampling.TopK, V);
        _top = new int[k];
        _weights = new double[k];
        _sequence = Sequence;
    }

    /// <summary>
    /// Empties the session for another sequence with <paramref name="sampling"/>, keeping its buffers
    /// (a host decodes request after request on one session: no cache or logits per request).
    /// </summary>
    public void Restart(Sampling? sampling = null)
    {
        _cache.Reset();
        _sampling = sampling ?? Sampling.Greedy;
        _rng = new Random(_sampling.Seed);
        int k = _sampling.TopK <= 0 ? 0 : Math.Min(_sampling.TopK, _logits.Length);
        if (_top.Length < k) { _top = new int[k]; _weights = new double[k]; }
    }

    /// <summary>Tokens in the cache (prompt and every token fed since).</summary>
    public int Length => _cache.Length;
    public int Capacity => _cache.Capacity;

    /// <summary>Runs the prompt [T] and returns the first new token. Only on an empty session.</summary>
    public int Prefill(ReadOnlySpan<int> prompt)
    {
        if (prompt.Length == 0) throw new ArgumentException("empty prompt");
        if (_cache.Length != 0) throw new InvalidOperationException("this session already holds a prompt");
        if (prompt.Length >= _cache.Capacity)
            throw new ArgumentException($"prompt ({prompt.Length} tokens) leaves no room for a new token in a session of {_cache.Capacity}");
        return Run(prompt);
    }

    /// <summary>Feeds <paramref name="token"/> (the one just picked) and returns the next. Throws when the session is full.</summary>
    public int Step(int token)
    {
        if (_cache.Length == 0) throw new InvalidOperationException("prefill a prompt first");
        if (_cache.Length >= _cache.Capacity) throw new InvalidOperationException($"the session is full ({_cache.Capacity} tokens)");
        _one[0] = token;
        return Run(_one);
    }

    private int Run(ReadOnlySpan<int> ids)
    {
        _tf.ForwardLast(ids, _cache, _deviceLogits);
        _tf.Model.Backend.ToHost(_deviceLogits, _logits);
        NonFinite.Check(_tf, _logits, _sequence);
        return Generator.Pick(_logits, _sampling, _rng, _top, _weights);
    }

    private int[] Sequence() => _cache.Tokens.AsSpan(0, _cache.Length).ToArray();

    public void Dispose()
    {
        _cache.Dispose();
        _deviceLogits.Dispose();
    }
}
