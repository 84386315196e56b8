using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Cli;

/// <summary>
/// The CLI's door into the runtime: a model loaded on one backend and the few things the commands
/// ask of it. Owns the backend and the weights.
/// </summary>
internal sealed class Engine : IDisposable
{
    private readonly IBackend _backend;
    private readonly Model _model;
    private readonly Transformer _transformer;

    private Engine(IBackend backend, Model model)
    {
        _backend = backend; _model = model; _transformer = new Transformer(model);
    }

    public static Engine Load(string folder, ModelConfig config, bool f64)
    {
        var backend = CreateBackend(f64);
        try { return new Engine(backend, Model.Load(folder, backend)); }
        catch { backend.Dispose(); throw; }
    }

    /// <summary>--f64: the float64 reference. Otherwise the fast float32 CPU backend (the reference until it exists).</summary>
    private static IBackend CreateBackend(bool f64) => new ReferenceBackend();

    public string BackendName => _backend.Name;
    private ModelConfig C => _model.Config;

    /// <summary>ids [T] -> logits of the last position [V].</summary>
    public double[] LastLogits(int[] ids)
    {
        using var r = _transformer.Forward(ids);
        return LastRow(r.Logits, ids.Length);
    }

    /// <summary>ids [T] -> logits [T, V] and hidden states [L+1, T, d], in the backend's precision (F64 or F32).</summary>
    public (HostTensor Logits, HostTensor Hidden) Full(int[] ids)
    {
        int T = ids.Length, d = C.DModel, L = C.Layers;
        using var r = _transformer.Forward(ids, new ForwardOptions { CaptureHidden = true });
        var hidden = r.Hidden ?? throw new InvalidOperationException("the forward returned no hidden states");
        if (_backend.Compute == DType.F64)
        {
            var logits = new double[(long)T * C.Vocab];
            _backend.ToHost(r.Logits, logits);
            var h = new double[(long)(L + 1) * T * d];
            for (int i = 0; i <= L; i++) _backend.ToHost(hidden[i], h.AsSpan(i * T * d, T * d));
            return (new HostTensor([T, C.Vocab], logits), new HostTensor([L + 1, T, d], h));
        }
        else
        {
            var logits = new float[(long)T * C.Vocab];
            _backend.ToHost(r.Logits, logits);
            var h = new float[(long)(L + 1) * T * d];
            for (int i = 0; i <= L; i++) _backend.ToHost(hidden[i], h.AsSpan(i * T * d, T * d));
            return (new HostTensor([T, C.Vocab], logits), new HostTensor([L + 1, T, d], h));
        }
    }

    /// <summary>
    /// Continues <paramref name="prompt"/> one token at a time with a KV cache: greedy, or top-k
    /// sampling with a seeded generator. Stops at EOS (not yielded), after MaxNew tokens, or when
    /// the context is full.
    /// </summary>
    public IEnumerable<int> Generate(int[] prompt, Commands.GenerateSettings s)
    {
        int capacity = Math.Min(C.MaxPositions, prompt.Length + s.MaxNew);
        using var cache = new KvCache(_model, capacity);
        var rng = new Random(s.Seed);
        double[] logits;
        using (var r = _transformer.Forward(prompt, cache: cache)) logits = LastRow(r.Logits, prompt.Length);
        for (int produced = 0; produced < s.MaxNew; produced++)
        {
            int next = Sampling.Pick(logits, s.TopK, s.Temperature, rng);
            if (next == s.Eos) yield break;
            yield return next;
            if (cache.Length >= capacity) yield break;
            using var r = _transformer.Forward([next], cache: cache);
            logits = LastRow(r.Logits, 1);
        }
    }

    /// <summary>logits [T, V] on the backend -> row T-1 [V] on the host.</summary>
    private double[] LastRow(Tensor logits, int T)
    {
        var all = new double[logits.Length];
        _backend.ToHost(logits, all);
        return all.AsSpan((T - 1) * C.Vocab, C.Vocab).ToArray();
    }

    public void Dispose()
    {
        _model.Dispose();
        _backend.Dispose();
    }
}
