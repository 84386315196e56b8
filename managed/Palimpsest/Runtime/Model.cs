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
    private Model(ModelConfig config, IBackend backend, ParamSet<Tensor> parameters, bool ownsParams = true, IDisposable? storage = null)
    {
        Config = config; Backend = backend; Params = parameters; _ownsParams = ownsParams; _storage = storage;
    }

    private readonly bool _ownsParams;
    // what the parameters are read from in place (the memory-mapped checkpoint), disposed after them
    private readonly IDisposable? _storage;

    /// <summary>
    /// The same parameters driven by <paramref name="sibling"/> (from <see cref="ISiblingBackend.CreateSibling"/>),
    /// for a Transformer on another thread. The view does not own the tensors (disposing it frees
    /// nothing) and must only read them while other threads use this model.
    /// </summary>
    internal Model ViewOn(IBackend sibling) => new(Config, sibling, Params, ownsParams: false);

    /// <summary>Other parameters (a weights version: mostly this model's tensors, a few replaced) driven by <paramref name="backend"/>; owns nothing.</summary>
    internal Model View(ParamSet<Tensor> parameters, IBackend backend) => new(Config, backend, parameters, ownsParams: false);

    public ModelConfig Config { get; }
    public IBackend Backend { get; }
    public ParamSet<Tensor> Params { get; }

    /// <summary>Loads a Hugging Face folder onto <paramref name="backend"/>.</summary>
    /// <remarks>A backend that reads weights in place (<see cref="IDirectWeights"/>: the CPU backend with a
    /// 16-bit checkpoint) gets the open files, which this model then keeps until it is disposed.</remarks>
    public static Model Load(string dir, IBackend backend)
    {
        if (backend is IDirectWeights direct)
        {
            var (cfg, set) = ModelLoader.Open(dir);
            try
            {
                if (direct.LoadDirect(cfg, set) is { } p)
                {
                    if (direct.ReadsTheFiles(p)) return new Model(cfg, backend, p, storage: set);
                    set.Dispose();
                    return new Model(cfg, backend, p);
                }
            }
            catch { set.Dispose(); throw; }
            set.Dispose();
        }
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

    /// <summary>Layer's WDown [f, d] as it is now, copied to the host in float64 (exact for every backend dtype).</summary>
    public double[] DownProjection(int layer)
    {
        var w = Params.Blocks[layer].WDown;
        var h = new double[w.Length];
        Backend.ToHost(w, h);
        return h;
    }

    /// <summary>Overwrites layer's WDown [f, d] with host values (e.g. the copy Editing's ApplyDelta returned).</summary>
    public void SetDownProjection(int layer, double[] values) => Backend.Upload(Params.Blocks[layer].WDown, values);

    public void Dispose()
    {
        if (!_ownsParams) return;
        foreach (var (_, t) in Params.Named()) t.Dispose();
        _storage?.Dispose();
    }
}
