using Palimpsest.Backends;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Runtime;

/// <summary>
/// A model's configuration and its parameters placed in one backend's memory. Owns the tensors:
/// dispose it to free them (GPU memory on CUDA).
/// </summary>
public sealed class Model : IDisposable
{
    private Model(ModelConfig config, IBackend backend, ParamSet<Tensor> parameters)
    {
        Config = config; Backend = backend; Params = parameters;
    }

    public ModelConfig Config { get; }
    public IBackend Backend { get; }
    public ParamSet<Tensor> Params { get; }

    /// <summary>Loads a Hugging Face folder onto <paramref name="backend"/>.</summary>
    public static Model Load(string dir, IBackend backend)
    {
        var (config, host) = ModelLoader.LoadHost(dir);
        return FromHost(config, host, backend);
    }

    /// <summary>Uploads host parameters (float32, or float64 where the host tensor is float64).</summary>
    public static Model FromHost(ModelConfig config, ParamSet<HostTensor> host, IBackend backend)
    {
        var p = host.Map((name, h) => h.F64 is not null ? backend.Weight(h.F64, h.Shape) : backend.Weight(h.F32!, h.Shape));
        return new Model(config, backend, p);
    }

    /// <summary>Zero-filled tensors shaped like every parameter (for weight gradients), on the same backend.</summary>
    public ParamSet<Tensor> ZerosLikeParams() => Params.Map((_, t) => Backend.Zeros(t.Shape));

    public void Dispose()
    {
        foreach (var (_, t) in Params.Named()) t.Dispose();
    }
}
