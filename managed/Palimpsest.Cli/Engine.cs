using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Backends.Cuda;
using Palimpsest.Cuda.Interop;
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

    public static Engine Load(string folder, bool f64, bool cuda, CpuWeights weights = CpuWeights.Auto)
    {
        Palimpsest.Journal.EditedModel.Settle(folder); // an edited folder holds what its journal says before it is read
        var backend = new DeviceChoice(cuda ? "cuda" : "cpu", F64: f64, Weights: weights).CreateBackend();
        Model? model = null;
        try
        {
            model = Model.Load(folder, backend);
            var e = new Engine(backend, model);
            e._transformer.Adaptor = Palimpsest.Journal.EditedModel.LoadAdaptor(folder, model); // LEMoE edits, if any
            return e;
        }
        catch { model?.Dispose(); backend.Dispose(); throw; }
    }

    public string BackendName => _backend.Name;
    private ModelConfig C => _model.Config;

    /// <summary>ids [T] -> logits of the last position [V].</summary>
    public double[] LastLogits(int[] ids)
    {
        using var r = _transformer.Forward(ids, new ForwardOptions { LogitsFrom = -1 });
        var logits = new double[C.Vocab];
        _backend.ToHost(r.Logits, logits);
        NonFinite.Check(_transformer, logits, () => ids);
        return logits;
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
    /// Continues <paramref name="prompt"/> token by token (greedy, or seeded top-k with the runtime's
    /// <see cref="Generator.Pick"/>, so a seed means the same text as <see cref="Generator"/>), yielding
    /// each token as soon as it is chosen so that the CLI can print while a large model works.
    /// Stops at EOS (not yielded), after MaxNew tokens, or when the context is full: asking for more
    /// than fits is not an error here, the user cannot know how many tokens the prompt became.
    /// </summary>
    public IEnumerable<int> Generate(int[] prompt, Commands.GenerateSettings s)
    {
        int count = Math.Min(s.MaxNew, C.MaxPositions - prompt.Length);
        if (count <= 0) yield break;
        var sampling = new Sampling { TopK = s.TopK, Temperature = s.Temperature, Seed = s.Seed };
        // the runtime's session: its cache and buffers are made once, so a token allocates nothing
        using var session = new DecodeSession(_transformer, prompt.Length + count, sampling);
        int next = session.Prefill(prompt);
        for (int i = 0; ; i++)
        {
            if (s.Stops.Contains(next)) yield break;
            yield return next;
            if (i + 1 == count) yield break;
            next = session.Step(next);
        }
    }

    public void Dispose()
    {
        _transformer.Dispose();
        _model.Dispose();
        _backend.Dispose();
    }
}
