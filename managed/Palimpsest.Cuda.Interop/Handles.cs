namespace Palimpsest.Cuda.Interop;

/// <summary>Device 0's primary context, retained for the lifetime of this object.</summary>
public sealed class CudaContext : IDisposable
{
    private bool _disposed;

    public CudaContext(int ordinal = 0)
    {
        Cuda.Require();
        CuDriver.Check(CuDriver.cuDeviceGet(out int dev, ordinal), $"cuDeviceGet({ordinal})");
        Device = dev;
        CuDriver.Check(CuDriver.cuDevicePrimaryCtxRetain(out var ctx, dev), "cuDevicePrimaryCtxRetain");
        Handle = ctx;
        MakeCurrent();
    }

    public int Device { get; }
    public IntPtr Handle { get; }

    /// <summary>Binds the context to the calling thread (the driver's current context is per thread).</summary>
    public void MakeCurrent() => CuDriver.Check(CuDriver.cuCtxSetCurrent(Handle), "cuCtxSetCurrent");

    public void Synchronize() => CuDriver.Check(CuDriver.cuCtxSynchronize(), "cuCtxSynchronize");

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        CuDriver.cuDevicePrimaryCtxRelease_v2(Device);
    }
}

/// <summary>Device memory from cuMemAlloc_v2 (or the stream-ordered pool when a stream is given).</summary>
public sealed class DeviceBuffer : IDisposable
{
    private readonly IntPtr _stream;
    private readonly bool _async;

    /// <summary>Allocates <paramref name="bytes"/> (at least 1) synchronously.</summary>
    public DeviceBuffer(long bytes)
    {
        Bytes = bytes;
        CuDriver.Check(CuDriver.cuMemAlloc_v2(out var p, (nuint)Math.Max(1, bytes)), $"cuMemAlloc_v2({bytes} bytes)");
        Ptr = p;
    }

    /// <summary>Allocates from the device's memory pool, ordered on <paramref name="stream"/> (cheap, no sync).</summary>
    public DeviceBuffer(long bytes, CudaStream? stream)
    {
        Bytes = bytes;
        _stream = stream?.Handle ?? IntPtr.Zero;
        _async = true;
        CuDriver.Check(CuDriver.cuMemAllocAsync(out var p, (nuint)Math.Max(1, bytes), _stream), $"cuMemAllocAsync({bytes} bytes)");
        Ptr = p;
    }

    public ulong Ptr { get; private set; }
    public long Bytes { get; }

    public unsafe void CopyFrom<T>(ReadOnlySpan<T> src) where T : unmanaged
    {
        long n = (long)src.Length * sizeof(T);
        if (n > Bytes) throw new ArgumentException($"{n} bytes into a {Bytes}-byte buffer");
        fixed (T* p = src) CuDriver.Check(CuDriver.cuMemcpyHtoD_v2(Ptr, p, (nuint)n), $"cuMemcpyHtoD_v2({n} bytes)");
    }

    public unsafe void CopyTo<T>(Span<T> dst) where T : unmanaged
    {
        long n = (long)dst.Length * sizeof(T);
        if (n > Bytes) throw new ArgumentException($"{n} bytes from a {Bytes}-byte buffer");
        fixed (T* p = dst) CuDriver.Check(CuDriver.cuMemcpyDtoH_v2(p, Ptr, (nuint)n), $"cuMemcpyDtoH_v2({n} bytes)");
    }

    public void Dispose()
    {
        if (Ptr == 0) return;
        var p = Ptr;
        Ptr = 0;
        if (_async) CuDriver.Check(CuDriver.cuMemFreeAsync(p, _stream), "cuMemFreeAsync");
        else CuDriver.Check(CuDriver.cuMemFree_v2(p), "cuMemFree_v2");
    }
}

public sealed class CudaStream : IDisposable
{
    public CudaStream(bool nonBlocking = true)
    {
        CuDriver.Check(CuDriver.cuStreamCreate(out var s, nonBlocking ? CuDriver.CU_STREAM_NON_BLOCKING : 0), "cuStreamCreate");
        Handle = s;
    }

    public IntPtr Handle { get; private set; }
    public void Synchronize() => CuDriver.Check(CuDriver.cuStreamSynchronize(Handle), "cuStreamSynchronize");

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        CuDriver.cuStreamDestroy_v2(Handle);
        Handle = IntPtr.Zero;
    }
}

public sealed class CudaEvent : IDisposable
{
    public CudaEvent()
    {
        CuDriver.Check(CuDriver.cuEventCreate(out var e, 0), "cuEventCreate");
        Handle = e;
    }

    public IntPtr Handle { get; private set; }
    public void Record(CudaStream? stream) => CuDriver.Check(CuDriver.cuEventRecord(Handle, stream?.Handle ?? IntPtr.Zero), "cuEventRecord");
    public void Synchronize() => CuDriver.Check(CuDriver.cuEventSynchronize(Handle), "cuEventSynchronize");

    /// <summary>Milliseconds from <paramref name="start"/> to this event (both recorded and completed).</summary>
    public float ElapsedSince(CudaEvent start)
    {
        Synchronize();
        CuDriver.Check(CuDriver.cuEventElapsedTime(out float ms, start.Handle, Handle), "cuEventElapsedTime");
        return ms;
    }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        CuDriver.cuEventDestroy_v2(Handle);
        Handle = IntPtr.Zero;
    }
}

public sealed class CublasHandle : IDisposable
{
    public CublasHandle(CudaStream? stream, bool allowTf32)
    {
        Cublas.Check(Cublas.cublasCreate_v2(out var h), "cublasCreate_v2");
        Handle = h;
        Cublas.Check(Cublas.cublasSetStream_v2(h, stream?.Handle ?? IntPtr.Zero), "cublasSetStream_v2");
        Cublas.Check(Cublas.cublasSetMathMode(h, allowTf32 ? Cublas.CUBLAS_TF32_TENSOR_OP_MATH : Cublas.CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    }

    public IntPtr Handle { get; private set; }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        Cublas.cublasDestroy_v2(Handle);
        Handle = IntPtr.Zero;
    }
}

public sealed class CusolverHandle : IDisposable
{
    public CusolverHandle(CudaStream? stream)
    {
        Cusolver.Check(Cusolver.cusolverDnCreate(out var h), "cusolverDnCreate");
        Handle = h;
        Cusolver.Check(Cusolver.cusolverDnSetStream(h, stream?.Handle ?? IntPtr.Zero), "cusolverDnSetStream");
    }

    public IntPtr Handle { get; private set; }

    public void Dispose()
    {
        if (Handle == IntPtr.Zero) return;
        Cusolver.cusolverDnDestroy(Handle);
        Handle = IntPtr.Zero;
    }
}
