namespace Palimpsest.Cuda.Interop;

/// <summary>
/// A failed CUDA, cuBLAS or cuSOLVER call: the message names the call and the library's own
/// error name, e.g. "cuMemAlloc_v2(1073741824 bytes): CUDA_ERROR_OUT_OF_MEMORY".
/// </summary>
public sealed class CudaException : Exception
{
    public CudaException(string call, string errorName, int code)
        : base($"{call}: {errorName}")
    {
        Call = call;
        ErrorName = errorName;
        Code = code;
    }

    /// <summary>The call that failed, with its key arguments.</summary>
    public string Call { get; }
    /// <summary>CUDA_ERROR_* / CUBLAS_STATUS_* / CUSOLVER_STATUS_* name.</summary>
    public string ErrorName { get; }
    public int Code { get; }
}

/// <summary>Thrown when something needs a CUDA device and this machine has none usable.</summary>
public sealed class CudaUnavailableException(string reason) : Exception(reason);
