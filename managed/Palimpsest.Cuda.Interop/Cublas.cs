using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Palimpsest.Cuda.Interop;

/// <summary>
/// Raw cuBLAS entry points (libcublas.so.13, else .12). Column-major, as cuBLAS is; the callers
/// do the row-major swap. Device pointers are ulong; alpha/beta are host pointers (the default
/// pointer mode).
/// </summary>
public static unsafe partial class Cublas
{
    private const string Lib = NativeLibraries.Cublas;

    [LibraryImport(Lib)] public static partial int cublasCreate_v2(out IntPtr handle);
    [LibraryImport(Lib)] public static partial int cublasDestroy_v2(IntPtr handle);
    [LibraryImport(Lib)] public static partial int cublasSetStream_v2(IntPtr handle, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cublasSetMathMode(IntPtr handle, int mode);
    [LibraryImport(Lib)] public static partial int cublasSetWorkspace_v2(IntPtr handle, ulong workspace, nuint bytes);

    [LibraryImport(Lib)] public static partial int cublasSgemm_v2(IntPtr handle, int transa, int transb, int m, int n, int k,
        float* alpha, ulong a, int lda, ulong b, int ldb, float* beta, ulong c, int ldc);
    [LibraryImport(Lib)] public static partial int cublasDgemm_v2(IntPtr handle, int transa, int transb, int m, int n, int k,
        double* alpha, ulong a, int lda, ulong b, int ldb, double* beta, ulong c, int ldc);
    [LibraryImport(Lib)] public static partial int cublasDsyrk_v2(IntPtr handle, int uplo, int trans, int n, int k,
        double* alpha, ulong a, int lda, double* beta, ulong c, int ldc);
    [LibraryImport(Lib)] public static partial int cublasSgemmStridedBatched(IntPtr handle, int transa, int transb, int m, int n, int k,
        float* alpha, ulong a, int lda, long strideA, ulong b, int ldb, long strideB, float* beta, ulong c, int ldc, long strideC, int batch);
    [LibraryImport(Lib)] public static partial int cublasGemmEx(IntPtr handle, int transa, int transb, int m, int n, int k,
        void* alpha, ulong a, int aType, int lda, ulong b, int bType, int ldb, void* beta, ulong c, int cType, int ldc,
        int computeType, int algo);

    /// <summary>batch products whose operands are arrays (in device memory) of device pointers</summary>
    [LibraryImport(Lib)] public static partial int cublasGemmBatchedEx(IntPtr handle, int transa, int transb, int m, int n, int k,
        void* alpha, ulong aArray, int aType, int lda, ulong bArray, int bType, int ldb, void* beta, ulong cArray, int cType, int ldc,
        int batchCount, int computeType, int algo);

    public const int CUBLAS_OP_N = 0, CUBLAS_OP_T = 1;
    public const int CUBLAS_FILL_MODE_LOWER = 0, CUBLAS_FILL_MODE_UPPER = 1;
    /// <summary>Default math: no TF32 for float32 GEMMs (unless NVIDIA_TF32_OVERRIDE says otherwise).</summary>
    public const int CUBLAS_DEFAULT_MATH = 0;
    public const int CUBLAS_TF32_TENSOR_OP_MATH = 3;
    public const int CUDA_R_32F = 0, CUDA_R_64F = 1, CUDA_R_16F = 2, CUDA_R_16BF = 14;
    public const int CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77;
    public const int CUBLAS_GEMM_DEFAULT = -1;

    /// <summary>cublasStatus_t name (cuBLAS has no name function).</summary>
    public static string StatusName(int status) => status switch
    {
        0 => "CUBLAS_STATUS_SUCCESS",
        1 => "CUBLAS_STATUS_NOT_INITIALIZED",
        3 => "CUBLAS_STATUS_ALLOC_FAILED",
        7 => "CUBLAS_STATUS_INVALID_VALUE",
        8 => "CUBLAS_STATUS_ARCH_MISMATCH",
        11 => "CUBLAS_STATUS_MAPPING_ERROR",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED",
        14 => "CUBLAS_STATUS_INTERNAL_ERROR",
        15 => "CUBLAS_STATUS_NOT_SUPPORTED",
        16 => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => $"cublasStatus {status}",
    };

    public static void Check(int status, string call)
    {
        if (status != 0) throw new CudaException(call, StatusName(status), status);
    }

    /// <summary>As <see cref="Check(int, string)"/>; an interpolated description is formatted only on failure.</summary>
    public static void Check(int status, [InterpolatedStringHandlerArgument(nameof(status))] ref CallDescription call)
    {
        if (status != 0) throw new CudaException(call.ToStringAndClear(), StatusName(status), status);
    }
}

/// <summary>Raw cuSOLVER dense entry points (float64 Cholesky factor and solve).</summary>
public static unsafe partial class Cusolver
{
    private const string Lib = NativeLibraries.Cusolver;

    [LibraryImport(Lib)] public static partial int cusolverDnCreate(out IntPtr handle);
    [LibraryImport(Lib)] public static partial int cusolverDnDestroy(IntPtr handle);
    [LibraryImport(Lib)] public static partial int cusolverDnSetStream(IntPtr handle, IntPtr stream);
    [LibraryImport(Lib)] public static partial int cusolverDnDpotrf_bufferSize(IntPtr handle, int uplo, int n, ulong a, int lda, out int lwork);
    [LibraryImport(Lib)] public static partial int cusolverDnDpotrf(IntPtr handle, int uplo, int n, ulong a, int lda, ulong work, int lwork, ulong devInfo);
    [LibraryImport(Lib)] public static partial int cusolverDnDpotrs(IntPtr handle, int uplo, int n, int nrhs, ulong a, int lda, ulong b, int ldb, ulong devInfo);

    public static string StatusName(int status) => status switch
    {
        0 => "CUSOLVER_STATUS_SUCCESS",
        1 => "CUSOLVER_STATUS_NOT_INITIALIZED",
        2 => "CUSOLVER_STATUS_ALLOC_FAILED",
        3 => "CUSOLVER_STATUS_INVALID_VALUE",
        4 => "CUSOLVER_STATUS_ARCH_MISMATCH",
        5 => "CUSOLVER_STATUS_MAPPING_ERROR",
        6 => "CUSOLVER_STATUS_EXECUTION_FAILED",
        7 => "CUSOLVER_STATUS_INTERNAL_ERROR",
        8 => "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED",
        _ => $"cusolverStatus {status}",
    };

    public static void Check(int status, string call)
    {
        if (status != 0) throw new CudaException(call, StatusName(status), status);
    }

    /// <summary>As <see cref="Check(int, string)"/>; an interpolated description is formatted only on failure.</summary>
    public static void Check(int status, [InterpolatedStringHandlerArgument(nameof(status))] ref CallDescription call)
    {
        if (status != 0) throw new CudaException(call.ToStringAndClear(), StatusName(status), status);
    }
}
