using System.Diagnostics.CodeAnalysis;
using System.Text;
using Palimpsest.Cuda.Interop;

namespace Palimpsest.Backends.Cuda;

/// <summary>
/// The PTX of kernels/*.cu, embedded in this assembly as "Palimpsest.Kernels.NAME.ptx" and loaded
/// with cuModuleLoadData (the driver JIT-compiles it for the card at hand), each behind its typed
/// launchers. Before a module loads, its launchers are checked against the PTX's .entry lists
/// (<see cref="KernelSignatures"/>): a launcher that passes the wrong arguments fails the backend's
/// construction with one line instead of a kernel reading garbage.
/// </summary>
internal sealed class KernelModules : IDisposable
{
    public static readonly string[] Names = ["activations", "attention", "elementwise", "embedding", "gemv", "losses", "norms", "rotary"];

    private readonly List<ModuleLauncher> _loaded = [];

    public KernelModules()
    {
        try
        {
            Activations = new ActivationsKernels(Load("activations"));
            Attention = new AttentionKernels(Load("attention"));
            Elementwise = new ElementwiseKernels(Load("elementwise"));
            Embedding = new EmbeddingKernels(Load("embedding"));
            Gemv = new GemvKernels(Load("gemv"));
            Losses = new LossesKernels(Load("losses"));
            Norms = new NormsKernels(Load("norms"));
            Rotary = new RotaryKernels(Load("rotary"));
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public ActivationsKernels Activations { get; }
    public AttentionKernels Attention { get; }
    public ElementwiseKernels Elementwise { get; }
    public EmbeddingKernels Embedding { get; }
    public GemvKernels Gemv { get; }
    public LossesKernels Losses { get; }
    public NormsKernels Norms { get; }
    public RotaryKernels Rotary { get; }

    /// <summary>The launcher class of kernels/NAME.cu.</summary>
    [return: DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicMethods)]
    public static Type Launchers(string name) => name switch
    {
        "activations" => typeof(ActivationsKernels),
        "attention" => typeof(AttentionKernels),
        "elementwise" => typeof(ElementwiseKernels),
        "embedding" => typeof(EmbeddingKernels),
        "gemv" => typeof(GemvKernels),
        "losses" => typeof(LossesKernels),
        "norms" => typeof(NormsKernels),
        "rotary" => typeof(RotaryKernels),
        _ => throw new ArgumentException($"no kernels/{name}.cu"),
    };

    /// <summary>Where the embedded PTX of kernels/NAME.cu comes from, for messages.</summary>
    public static string PtxFile(string name) => $"kernels/ptx/{name}.ptx";

    /// <summary>The embedded PTX text of kernels/NAME.cu.</summary>
    public static byte[] Ptx(string name)
    {
        var resource = $"Palimpsest.Kernels.{name}.ptx";
        using var s = typeof(KernelModules).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"embedded resource {resource} is missing ({PtxFile(name)})");
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    /// <summary>Throws one line naming the entry, the parameter and what the PTX expects unless kernels/NAME.cu's launchers agree with <paramref name="ptx"/>.</summary>
    public static void CheckLaunchers(string name, byte[] ptx) => KernelSignatures.Verify(Launchers(name), PtxFile(name), Encoding.UTF8.GetString(ptx));

    private ModuleLauncher Load(string name)
    {
        var ptx = Ptx(name);
        CheckLaunchers(name, ptx);
        var m = new ModuleLauncher(new CudaModule(name, ptx));
        _loaded.Add(m);
        return m;
    }

    public void Dispose()
    {
        foreach (var m in _loaded) m.Dispose();
        _loaded.Clear();
    }
}
