using Palimpsest.Tensors;
using System.Reflection;
using Palimpsest.Cuda.Interop;

namespace Palimpsest.Backends.Cuda;

/// <summary>
/// The PTX of kernels/*.cu, embedded in this assembly as "Palimpsest.Kernels.NAME.ptx" and loaded
/// with cuModuleLoadData (the driver JIT-compiles it for the card at hand).
/// </summary>
internal sealed class KernelModules : IDisposable
{
    public static readonly string[] Names = ["activations", "attention", "elementwise", "embedding", "gemv", "losses", "norms", "rotary"];

    public KernelModules()
    {
        Activations = Load("activations");
        Attention = Load("attention");
        Elementwise = Load("elementwise");
        Embedding = Load("embedding");
        Gemv = Load("gemv");
        Losses = Load("losses");
        Norms = Load("norms");
        Rotary = Load("rotary");
    }

    public CudaModule Activations { get; }
    public CudaModule Attention { get; }
    public CudaModule Elementwise { get; }
    public CudaModule Embedding { get; }
    public CudaModule Gemv { get; }
    public CudaModule Losses { get; }
    public CudaModule Norms { get; }
    public CudaModule Rotary { get; }

    /// <summary>The embedded PTX text of kernels/NAME.cu.</summary>
    public static byte[] Ptx(string name)
    {
        var resource = $"Palimpsest.Kernels.{name}.ptx";
        using var s = typeof(KernelModules).Assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"embedded resource {resource} is missing (kernels/ptx/{name}.ptx)");
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    private static CudaModule Load(string name) => new(name, Ptx(name));

    public void Dispose()
    {
        Activations.Dispose();
        Attention.Dispose();
        Elementwise.Dispose();
        Embedding.Dispose();
        Gemv.Dispose();
        Losses.Dispose();
        Norms.Dispose();
        Rotary.Dispose();
    }
}
