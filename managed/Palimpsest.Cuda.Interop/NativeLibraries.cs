using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Palimpsest.Cuda.Interop;

/// <summary>
/// The one DllImport resolver of this assembly: maps the logical library names used by the
/// bindings ("cuda", "cublas", "cusolver", "nvrtc") to the sonames of the installed CUDA,
/// newest major version first, then the toolkit's own folders (which ldconfig may not list).
/// </summary>
internal static class NativeLibraries
{
    public const string Cuda = "cuda";
    public const string Cublas = "cublas";
    public const string Cusolver = "cusolver";
    public const string Nvrtc = "nvrtc";

    private static readonly string[] ToolkitDirs =
    [
        "/usr/local/cuda/targets/x86_64-linux/lib",
        "/usr/local/cuda/lib64",
    ];

    /// <summary>Candidate sonames per logical name, in the order they are tried.</summary>
    internal static string[] Candidates(string name) => name switch
    {
        Cuda => ["libcuda.so.1", "libcuda.so"],
        Cublas => ["libcublas.so.13", "libcublas.so.12"],
        // cuSOLVER's soname lags the toolkit's major version (CUDA 13 ships libcusolver.so.12).
        Cusolver => ["libcusolver.so.12", "libcusolver.so.11"],
        Nvrtc => ["libnvrtc.so.13", "libnvrtc.so.12"],
        _ => [],
    };

#pragma warning disable CA2255 // a module initializer is the only place that runs before the first P/Invoke
    [ModuleInitializer]
    internal static void Register() =>
        NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
#pragma warning restore CA2255

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? path) =>
        TryLoad(name, out var handle) ? handle : IntPtr.Zero;

    /// <summary>Loads a logical library; false when no candidate loads (no exception).</summary>
    internal static bool TryLoad(string name, out IntPtr handle)
    {
        foreach (var so in Candidates(name))
            if (NativeLibrary.TryLoad(so, out handle)) return true;
        foreach (var dir in ToolkitDirs)
            foreach (var so in Candidates(name))
            {
                var full = Path.Combine(dir, so);
                if (File.Exists(full) && NativeLibrary.TryLoad(full, out handle)) return true;
            }
        handle = IntPtr.Zero;
        return false;
    }

    /// <summary>What was looked for, for error messages: "libcuda.so.1 or libcuda.so".</summary>
    internal static string Describe(string name) => string.Join(" or ", Candidates(name));
}
