using Palimpsest.Cuda.Interop;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

// Matrix products through cuBLAS. cuBLAS is column-major; a row-major X [r, c] read column-major
// is X^T, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T with the operands swapped.
public sealed partial class CudaBackend
{
    // c [M, N] (+)= op(a) [M, K] . op(b) [K, N]; a stored [K, M] when transA, b stored [N, K] when transB
    public unsafe void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, bool accumulate = false)
    {
        var ca = C(a, "a");
        var cb = C(b, "b");
        var cc = F(c, "c");
        int m = transA ? ca.Cols : ca.Rows, k = transA ? ca.Rows : ca.Cols;
        int kb = transB ? cb.Cols : cb.Rows, n = transB ? cb.Rows : cb.Cols;
        if (k != kb || cc.Rows != m || cc.Cols != n)
            throw new ArgumentException($"MatMul: {(transA ? "a^T" : "a")} {ca} . {(transB ? "b^T" : "b")} {cb} -> c {cc}");
        if (m == 0 || n == 0) return;
        if (k == 0) { if (!accumulate) Zero(cc); return; }

        // one row times a weight (a decode step): gemv.cu streams the weight once, x stays float32
        if (m == 1 && !transA && ca.DType == DType.F32 && UseGemv)
        {
            if (transB) GemvTransposed(ca, cb, cc, accumulate);
            else Gemv(ca, [(cb, null, cc)], accumulate ? cc : null, null, Activation.GeluTanh);
            return;
        }

        int opA = transA ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N;
        int opB = transB ? Cublas.CUBLAS_OP_T : Cublas.CUBLAS_OP_N;
        int lda = transA ? m : k, ldb = transB ? k : n;
        float alpha = 1f, beta = accumulate ? 1f : 0f;
        Bind();

        if (ca.DType == DType.F32 && cb.DType == DType.F32)
        {
            Cublas.Check(Cublas.cublasSgemm_v2(_blas.Handle, opB, opA, n, m, k, &alpha, cb.Ptr, ldb, ca.Ptr, lda, &beta, accumulate ? cc.Ptr : cc.OverwritePtr, n),
                $"cublasSgemm_v2(M={m}, N={n}, K={k})");
            return;
        }

        // A narrow weight: cuBLAS wants both inputs in one type, so the float32 operand is rounded
        // to the weight's type and the product accumulates in float32 on the tensor cores.
        var narrow = ca.DType != DType.F32 ? ca.DType : cb.DType;
        if (ca.DType != DType.F32 && cb.DType != DType.F32 && ca.DType != cb.DType)
            throw new ArgumentException($"MatMul: mixed narrow types {ca} and {cb}");
        using var na = ca.DType == narrow ? null : NarrowCopy(ca, narrow);
        using var nb = cb.DType == narrow ? null : NarrowCopy(cb, narrow);
        int type = narrow == DType.F16 ? Cublas.CUDA_R_16F : Cublas.CUDA_R_16BF;
        Cublas.Check(Cublas.cublasGemmEx(_blas.Handle, opB, opA, n, m, k, &alpha, (nb ?? cb).Ptr, type, ldb, (na ?? ca).Ptr, type, lda,
                &beta, accumulate ? cc.Ptr : cc.OverwritePtr, Cublas.CUDA_R_32F, n, Cublas.CUBLAS_COMPUTE_32F, Cublas.CUBLAS_GEMM_DEFAULT),
            $"cublasGemmEx(M={m}, N={n}, K={k}, {narrow})");
    }

    private CudaTensor NarrowCopy(CudaTensor f32, DType narrow)
    {
        var t = New(narrow, f32.Shape);
        Narrow(f32, t);
        return t;
    }
}
