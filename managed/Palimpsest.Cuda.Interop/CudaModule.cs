using System.Text;

namespace Palimpsest.Cuda.Interop;

/// <summary>One kernel argument as the 8 bytes the driver reads from (ints and floats use the low 4).</summary>
public readonly struct KArg
{
    private KArg(long bits) { Bits = bits; }
    public long Bits { get; }
    public static implicit operator KArg(int v) => new((uint)v);
    public static implicit operator KArg(long v) => new(v);
    public static implicit operator KArg(float v) => new((uint)BitConverter.SingleToInt32Bits(v));
    /// <summary>A device pointer.</summary>
    public static implicit operator KArg(ulong p) => new((long)p);
}

/// <summary>A PTX module loaded with cuModuleLoadData; kernels looked up by name and cached.</summary>
public sealed class CudaModule : IDisposable
{
    private readonly Dictionary<string, IntPtr> _functions = new();
    private readonly object _lock = new();

    public unsafe CudaModule(string name, byte[] ptx)
    {
        Name = name;
        // cuModuleLoadData wants a NUL-terminated PTX image.
        var image = new byte[ptx.Length + 1];
        ptx.CopyTo(image, 0);
        IntPtr m;
        fixed (byte* p = image) CuDriver.Check(CuDriver.cuModuleLoadData(out m, p), $"cuModuleLoadData({name})");
        Handle = m;
    }

    public string Name { get; }
    public IntPtr Handle { get; private set; }

    public unsafe IntPtr Function(string kernel)
    {
        lock (_lock)
        {
            if (_functions.TryGetValue(kernel, out var f)) return f;
            var bytes = Encoding.ASCII.GetBytes(kernel + "\0");
            fixed (byte* p = bytes) CuDriver.Check(CuDriver.cuModuleGetFunction(out f, Handle, p), $"cuModuleGetFunction({Name}.{kernel})");
            _functions[kernel] = f;
            return f;
        }
    }

    /// <summary>Launches <paramref name="kernel"/> with a (gx, gy) grid of bx-thread blocks.</summary>
    public void Launch(string kernel, uint gx, uint gy, uint bx, uint sharedBytes, IntPtr stream, params ReadOnlySpan<KArg> args) =>
        Launch3D(kernel, gx, gy, 1, bx, sharedBytes, stream, args);

    /// <summary>Launches <paramref name="kernel"/> with a (gx, gy, gz) grid of bx-thread blocks.</summary>
    public unsafe void Launch3D(string kernel, uint gx, uint gy, uint gz, uint bx, uint sharedBytes, IntPtr stream, params ReadOnlySpan<KArg> args)
    {
        if (gx == 0 || gy == 0 || gz == 0) return; // empty tensors: nothing to do (the driver rejects 0-sized grids)
        var f = Function(kernel);
        long* vals = stackalloc long[Math.Max(1, args.Length)];
        void** ptrs = stackalloc void*[Math.Max(1, args.Length)];
        for (int i = 0; i < args.Length; i++)
        {
            vals[i] = args[i].Bits;
            ptrs[i] = &vals[i];
        }
        CuDriver.Check(CuDriver.cuLaunchKernel(f, gx, gy, gz, bx, 1, 1, sharedBytes, stream, ptrs, null),
            $"cuLaunchKernel({Name}.{kernel}, grid {gx}x{gy}x{gz}, block {bx}, smem {sharedBytes})");
    }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        CuDriver.cuModuleUnload(Handle);
        Handle = IntPtr.Zero;
    }
}
