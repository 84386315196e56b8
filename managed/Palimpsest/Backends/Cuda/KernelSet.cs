using Palimpsest.Cuda.Interop;

namespace Palimpsest.Backends.Cuda;

/// <summary>One launch's geometry: an (X, Y, Z) grid of Threads-thread blocks with SharedBytes of dynamic shared memory, queued on Stream.</summary>
internal readonly record struct KernelGrid(uint X, uint Y, uint Z, uint Threads, uint SharedBytes, IntPtr Stream);

/// <summary>Where a launcher's call goes: a loaded module on the device, or in tests a recorder (no GPU needed).</summary>
internal interface IKernelLauncher
{
    void Launch(string entry, in KernelGrid grid, ReadOnlySpan<KArg> args);

    /// <summary>Lets <paramref name="entry"/> use <paramref name="bytes"/> of dynamic shared memory (past the default 48 KiB).</summary>
    void AllowSharedBytes(string entry, int bytes);
}

/// <summary>
/// The launchers of one kernels/*.cu: one public method per extern "C" entry, named as the entry,
/// taking the grid and then the entry's parameters in the .cu's order, typed as the PTX passes
/// them: int and float 4 bytes, long and ulong (device pointers) 8. A method that launches one of
/// several same-signature entries (a macro instantiated per weight type) takes a selector before
/// the grid and lists its entries in <see cref="KernelEntriesAttribute"/>. Call sites are thus
/// checked by the compiler against the declaration, and <see cref="KernelSignatures"/> checks the
/// declaration against the PTX .entry list: when a module loads, and in a CPU test.
/// </summary>
internal abstract class KernelSet(IKernelLauncher target)
{
    protected void Launch(string entry, in KernelGrid grid, params ReadOnlySpan<KArg> args) => target.Launch(entry, grid, args);

    /// <summary>Opts <paramref name="entry"/> in to <paramref name="bytes"/> of dynamic shared memory.</summary>
    internal void AllowSharedBytes(string entry, int bytes) => target.AllowSharedBytes(entry, bytes);
}

/// <summary>The PTX entries a launcher with a selector parameter launches (default: the one named as the method).</summary>
[AttributeUsage(AttributeTargets.Method)]
internal sealed class KernelEntriesAttribute(params string[] entries) : Attribute
{
    public string[] Entries { get; } = entries;
}

/// <summary>A PTX module loaded on the device as a launch target.</summary>
internal sealed class ModuleLauncher(CudaModule module) : IKernelLauncher, IDisposable
{
    public void Launch(string entry, in KernelGrid grid, ReadOnlySpan<KArg> args) =>
        module.Launch3D(entry, grid.X, grid.Y, grid.Z, grid.Threads, grid.SharedBytes, grid.Stream, args);

    public void AllowSharedBytes(string entry, int bytes) =>
        CuDriver.Check(CuDriver.cuFuncSetAttribute(module.Function(entry), CuDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, bytes),
            $"cuFuncSetAttribute({entry}, {bytes} bytes shared)");

    public void Dispose() => module.Dispose();
}
