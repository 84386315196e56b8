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
        var (m, n, k) = OpShapes.MatMul(ca, transA, cb, transB, cc);
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

        ulong pc = accumulate ? cc.Ptr : cc.OverwritePtr;
        // A wide N that is no multiple of 128 (a vocabulary of 50257) as two products: the first
        // 128-aligned columns, then the rest (cuBLAS picks slow kernels for the odd width: run 6a,
        // 235 µs against 74 for 50304 columns). Columns j.. of op(b) start j elements into b
        // stored [K, N], j rows (j·K elements) into b stored [N, K]; of c, j elements in.
        int n1 = SplitWideN && n >= 4096 && n % 128 != 0 ? n / 128 * 128 : n;
        long bOffset = transB ? (long)n1 * k : n1;

        if (ca.DType == DType.F32 && cb.DType == DType.F32)
        {
            for (int part = 0; part < (n1 < n ? 2 : 1); part++)
            {
                int nn = part == 0 ? n1 : n - n1;
                ulong pb32 = cb.Ptr + (part == 0 ? 0UL : (ulong)(bOffset * 4)), pc32 = pc + (part == 0 ? 0UL : (ulong)n1 * 4);
                Cublas.Check(Cublas.cublasSgemm_v2(_blas.Handle, opB, opA, nn, m, k, &alpha, pb32, ldb, ca.Ptr, lda, &beta, pc32, n),
                    $"cublasSgemm_v2(M={m}, N={nn}, K={k})");
            }
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
        ulong pa = (na ?? ca).Ptr, pb = (nb ?? cb).Ptr;
        for (int part = 0; part < (n1 < n ? 2 : 1); part++)
        {
            int nn = part == 0 ? n1 : n - n1;
            ulong pbp = pb + (part == 0 ? 0UL : (ulong)(bOffset * 2)), pcp = pc + (part == 0 ? 0UL : (ulong)n1 * 4);
            Cublas.Check(Cublas.cublasGemmEx(_blas.Handle, opB, opA, nn, m, k, &alpha, pbp, type, ldb, pa, type, lda,
                    &beta, pcp, Cublas.CUDA_R_32F, n, Cublas.CUBLAS_COMPUTE_32F, Cublas.CUBLAS_GEMM_DEFAULT),
                $"cublasGemmEx(M={m}, N={nn}, K={k}, {narrow})");
        }
    }

    /// <summary>Split a wide odd N into a 128-aligned product and the rest (the benchmark compares both).</summary>
    internal bool SplitWideN { get; set; } = true;

    private CudaTensor NarrowCopy(CudaTensor f32, DType narrow)
    {
        var t = New(narrow, f32.Shape);
        Narrow(f32, t);
        return t;
    }
}
