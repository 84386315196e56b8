using System.Runtime.InteropServices;

namespace Palimpsest.Cuda.Interop;

/// <summary>
/// Raw CUDA driver API entry points (libcuda.so.1). Blittable signatures only: CUresult is int,
/// CUdeviceptr is ulong, every other handle is an IntPtr. Callers go through <see cref="Check"/>.
/// </summary>
public static unsafe partial class CuDriver
{
    private const string Lib = NativeLibraries.Cuda;

    [LibraryImport(Lib)] public static partial int cuInit(uint flags);
    [LibraryImport(Lib)] public static partial int cuDriverGetVersion(out int version);
    [LibraryImport(Lib)] public static partial int cuDeviceGetCount(out int count);
    [LibraryImport(Lib)] public static partial int cuDeviceGet(out int device, int ordinal);
    [LibraryImport(Lib)] public static partial int cuDeviceGetName(byte* name, int len, int device);
    [LibraryImport(Lib)] public static partial int cuDeviceGetAttribute(out int value, int attribute, int device);
    [LibraryImport(Lib)] public static partial int cuDeviceTotalMem_v2(out ulong bytes, int device);
    [LibraryImport(Lib)] public static partial int cuDevicePrimaryCtxRetain(out IntPtr ctx, int device);
    [LibraryImport(Lib)] public static partial int cuDevicePrimaryCtxRelease_v2(int device);
    [LibraryImport(Lib)] public static partial int cuCtxSetCurrent(IntPtr ctx);
    [LibraryImport(Lib)] public static partial int cuCtxSynchronize();
    [LibraryImport(Lib)] public static partial int cuMemGetInfo_v2(out ulong free, out ulong total);

    [LibraryImport(Lib)] public static partial int cuModuleLoadData(out IntPtr module, byte* image);
    [LibraryImport(Lib)] public static partial int cuModuleUnload(IntPtr module);
    [LibraryImport(Lib)] public static partial int cuModuleGetFunction(out IntPtr function, IntPtr module, byte* name);
    [LibraryImport(Lib)] public static partial int cuFuncSetAttribute(IntPtr function, int attribute, int value);
    [LibraryImport(Lib)] public static partial int cuLaunchKernel(IntPtr f, uint gx, uint gy, uint gz, uint bx, uint by, uint bz,
        uint sharedMemBytes, IntPtr stream, void** kernelParams, void** extra);

    [LibraryImport(Lib)] public static partial int cuMemAlloc_v2(out ulong dptr, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemFree_v2(ulong dptr);
    [LibraryImport(Lib)] public static partial int cuMemAllocAsync(out ulong dptr, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuMemFreeAsync(ulong dptr, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuDeviceGetDefaultMemPool(out IntPtr pool, int device);
    [LibraryImport(Lib)] public static partial int cuMemPoolSetAttribute(IntPtr pool, int attribute, void* value);
    [LibraryImport(Lib)] public static partial int cuMemcpyHtoD_v2(ulong dst, void* src, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemcpyDtoH_v2(void* dst, ulong src, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemcpyDtoD_v2(ulong dst, ulong src, nuint bytes);
    [LibraryImport(Lib)] public static partial int cuMemcpyHtoDAsync_v2(ulong dst, void* src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuMemcpyDtoHAsync_v2(void* dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuMemcpyDtoDAsync_v2(ulong dst, ulong src, nuint bytes, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuMemsetD8_v2(ulong dst, byte value, nuint count);
    [LibraryImport(Lib)] public static partial int cuMemsetD32_v2(ulong dst, uint value, nuint count);
    [LibraryImport(Lib)] public static partial int cuMemsetD8Async(ulong dst, byte value, nuint count, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuMemsetD32Async(ulong dst, uint value, nuint count, IntPtr stream);

    [LibraryImport(Lib)] public static partial int cuStreamCreate(out IntPtr stream, uint flags);
    [LibraryImport(Lib)] public static partial int cuStreamDestroy_v2(IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuStreamSynchronize(IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuEventCreate(out IntPtr evt, uint flags);
    [LibraryImport(Lib)] public static partial int cuEventDestroy_v2(IntPtr evt);
    [LibraryImport(Lib)] public static partial int cuEventRecord(IntPtr evt, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuEventSynchronize(IntPtr evt);
    [LibraryImport(Lib)] public static partial int cuEventElapsedTime(out float ms, IntPtr start, IntPtr end);

    [LibraryImport(Lib)] public static partial int cuStreamBeginCapture_v2(IntPtr stream, int mode);
    [LibraryImport(Lib)] public static partial int cuStreamEndCapture(IntPtr stream, out IntPtr graph);
    [LibraryImport(Lib)] public static partial int cuGraphInstantiateWithFlags(out IntPtr exec, IntPtr graph, ulong flags);
    [LibraryImport(Lib)] public static partial int cuGraphLaunch(IntPtr exec, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cuGraphExecDestroy(IntPtr exec);
    [LibraryImport(Lib)] public static partial int cuGraphDestroy(IntPtr graph);

    [LibraryImport(Lib)] public static partial int cuGetErrorName(int error, out IntPtr name);
    [LibraryImport(Lib)] public static partial int cuGetErrorString(int error, out IntPtr text);

    public const int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
    public const int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
    public const int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
    public const int CU_MEMPOOL_ATTR_RELEASE_THRESHOLD = 4;
    public const uint CU_STREAM_NON_BLOCKING = 1;
    public const int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;

    /// <summary>"CUDA_ERROR_OUT_OF_MEMORY" for a result code (the number if the driver does not know it).</summary>
    public static string ErrorName(int result)
    {
        try
        {
            if (cuGetErrorName(result, out var p) == 0 && p != IntPtr.Zero) return Marshal.PtrToStringAnsi(p) ?? $"CUresult {result}";
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }
        return $"CUresult {result}";
    }

    /// <summary>Throws <see cref="CudaException"/> naming <paramref name="call"/> unless result is CUDA_SUCCESS.</summary>
    public static void Check(int result, string call)
    {
        if (result != 0) throw new CudaException(call, ErrorName(result), result);
    }
}
