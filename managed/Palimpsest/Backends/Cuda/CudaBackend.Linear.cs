using Palimpsest.Cuda.Interop;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

// IFusedLinear: linear layers with their epilogues fused. One input row (a decode step) goes
// through kernels/gemv.cu, one launch per layer call; several rows through cuBLAS plus one
// epilogue kernel (kernels/elementwise.cu) instead of two or three. A Linear without a residual
// runs MatMul + AddBias unless FuseBiasWithoutResidual; LinearBackward is IBackend's default, the
// composition (cuBLAS products and sum_rows).
public sealed partial class CudaBackend : IFusedLinear
{
    // gemv.cu's split-K scratch, allocated with the backend so that graph captures never need it:
    // partials [Z, S, N] and one ticket counter per (matrix, column tile), zero between launches.
    private const long GemvPartialFloats = 4L << 20; // 16 MiB
    private const int GemvCounters = 4096;
    internal const int GemvCols = 256;               // GEMV_COLS of kernels/gemv.cu (KernelConstantTests)
    internal const int TransposeTile = 32;           // TRANSPOSE_TILE of kernels/gemv.cu; Block = TRANSPOSE_TILE x TRANSPOSE_ROWS
    private DeviceBuffer? _gemvPartials, _gemvCounters;

    private void InitGemv()
    {
        _gemvPartials = new DeviceBuffer(GemvPartialFloats * 4);
        _gemvCounters = new DeviceBuffer(GemvCounters * 4);
        CuDriver.Check(CuDriver.cuMemsetD32_v2(_gemvCounters.Ptr, 0, GemvCounters), "cuMemsetD32_v2(gemv counters)");
        _pointerRing = new DeviceBuffer((long)PointerSlots * PointerSlotBytes);
    }

    private void DisposeGemv()
    {
        _pointerRing?.Dispose();
        _gemvPartials?.Dispose();
        _gemvCounters?.Dispose();
    }

    /// <summary>Use gemv.cu for one-row products (on by default; off: cuBLAS, for comparisons).</summary>
    internal bool UseGemv { get; set; } = true;

    /// <summary>How many blocks per SM gemv_xw aims at when it splits K (the benchmark tries several).</summary>
    internal int GemvBlocksPerSm { get; set; } = 2;

    /// <summary>
    /// Fold the bias of a one-row Linear without a residual into its gemv launch (off by default:
    /// MatMul, itself one gemv launch, then add_bias). The transformer's products whose output is
    /// read on its own (an intervention's or the adaptor's, a parallel block's two, SwiGLU's up and
    /// gate) ran as MatMul + AddBias before they went through IFusedLinear; on, a decode step runs one
    /// launch fewer for each that has a bias (issue 21 checks it on a GPU before it becomes the default).
    /// </summary>
    internal bool FuseBiasWithoutResidual { get; set; }

    // y [T, out] = residual + (x [T, in] · w [in, out] + b)
    public void Linear(Tensor x, Tensor w, Tensor? b, Tensor y, Tensor? residual = null)
    {
        var (cx, cw, cy) = CheckLinear("Linear", x, w, b, y);
        if (residual is not null)
        {
            var cr = F(residual, "residual");
            if (cr.Rows != cy.Rows || cr.Cols != cy.Cols) throw new ArgumentException($"Linear: residual {cr} is not shaped like y {cy}");
            if (cr.RawPtr == cy.RawPtr) throw new ArgumentException("Linear: y must not alias residual");
        }
        if (GemvApplies(cx, cw) && (residual is not null || FuseBiasWithoutResidual))
        {
            Gemv(cx, [(cw, b, cy)], residual, null, Activation.GeluTanh);
            return;
        }
        MatMul(x, false, w, false, y);
        if (residual is null)
        {
            if (b is not null) AddBias(y, b);
            return;
        }
        var cb = b is null ? null : C(b, "b");
        _k.Elementwise.bias_residual_f32(PerElement(cy.Length), cy.Ptr, cb?.Ptr ?? 0UL, cb is null ? 0 : DTypeCode(cb.DType),
            F(residual, "residual").Ptr, (long)cy.Rows, cy.Cols);
    }

    // up [T, f] = x · w + b; key = act(up)
    public void LinearAct(Activation act, Tensor x, Tensor w, Tensor? b, Tensor up, Tensor key)
    {
        var (cx, cw, cu) = CheckLinear("LinearAct", x, w, b, up);
        SameLength(up, key, "LinearAct");
        var ck = F(key, "key");
        if (ck.RawPtr == cu.RawPtr) throw new ArgumentException("LinearAct: key must not alias up");
        if (GemvApplies(cx, cw))
        {
            Gemv(cx, [(cw, b, cu)], null, ck, act);
            return;
        }
        MatMul(x, false, w, false, up);
        var cb = b is null ? null : C(b, "b");
        _k.Elementwise.bias_act_f32(PerElement(cu.Length), cu.Ptr, cb?.Ptr ?? 0UL, cb is null ? 0 : DTypeCode(cb.DType),
            ck.OverwritePtr, (int)act, (long)cu.Rows, cu.Cols);
    }

    // y_i = x · w_i + b_i, i = 0, 1, 2
    public void Linear3(Tensor x, Tensor w0, Tensor? b0, Tensor y0, Tensor w1, Tensor? b1, Tensor y1, Tensor w2, Tensor? b2, Tensor y2)
    {
        var m0 = CheckLinear("Linear3 (0)", x, w0, b0, y0);
        var m1 = CheckLinear("Linear3 (1)", x, w1, b1, y1);
        var m2 = CheckLinear("Linear3 (2)", x, w2, b2, y2);
        var cx = m0.X;
        if (m1.W.DType != m0.W.DType || m2.W.DType != m0.W.DType)
            throw new ArgumentException($"Linear3: weights of different types ({m0.W}, {m1.W}, {m2.W})");
        if (GemvApplies(cx, m0.W))
        {
            Gemv(cx, [(m0.W, b0, m0.Y), (m1.W, b1, m1.Y), (m2.W, b2, m2.Y)], null, null, Activation.GeluTanh);
            return;
        }
        // cuBLAS: a narrow weight wants x narrowed; do it once for the three products, and when
        // the three have one shape (GPT-2's q, k, v) run them as one batched product
        using var narrowed = m0.W.DType == DType.F32 ? null : NarrowCopy(cx, m0.W.DType);
        var input = (Tensor?)narrowed ?? x;
        if (narrowed is not null && UseBatchedLinear3 && m1.W.Cols == m0.W.Cols && m2.W.Cols == m0.W.Cols)
            BatchedProducts(narrowed, [m0.W, m1.W, m2.W], [m0.Y, m1.Y, m2.Y]);
        else
        {
            MatMul(input, false, w0, false, y0);
            MatMul(input, false, w1, false, y1);
            MatMul(input, false, w2, false, y2);
        }
        var bs = new[] { b0, b1, b2 };
        var present = bs.Where(t => t is not null).Select(t => C(t!, "b")).ToArray();
        if (present.Length == 0) return;
        if (present.Any(t => t.DType != present[0].DType)) throw new ArgumentException("Linear3: biases of different types");
        int nMax = Math.Max(m0.Y.Cols, Math.Max(m1.Y.Cols, m2.Y.Cols));
        long blocks = Math.Min(((long)cx.Rows * nMax + Block - 1) / Block, 1 << 20);
        _k.Elementwise.add_bias3_f32(Grid((uint)blocks, 3, 1, Block),
            m0.Y.Ptr, b0 is null ? 0UL : C(b0, "b0").Ptr, m0.Y.Cols,
            m1.Y.Ptr, b1 is null ? 0UL : C(b1, "b1").Ptr, m1.Y.Cols,
            m2.Y.Ptr, b2 is null ? 0UL : C(b2, "b2").Ptr, m2.Y.Cols,
            DTypeCode(present[0].DType), (long)cx.Rows);
    }

    /// <summary>Run Linear3's three same-shaped narrow products as one cublasGemmBatchedEx (the benchmark compares).</summary>
    internal bool UseBatchedLinear3 { get; set; } = true;

    // cublasGemmBatchedEx reads its operands from arrays of device pointers in device memory: a ring
    // of 128-byte slots, each call writing the next one with a stream-ordered upload (so a slot is
    // rewritten only after the products that read it ran; a graph records the upload and replays it).
    private const int PointerSlots = 4096, PointerSlotBytes = 128;
    private DeviceBuffer? _pointerRing;
    private int _pointerNext;

    // y_i [T, N] = xn [T, K] . w_i [K, N] for i < 3; xn and w_i in one narrow type, y_i float32 (overwritten)
    private unsafe void BatchedProducts(CudaTensor xn, ReadOnlySpan<CudaTensor> w, ReadOnlySpan<CudaTensor> y)
    {
        int m = xn.Rows, k = xn.Cols, n = w[0].Cols, count = w.Length;
        Bind();
        ulong slot = _pointerRing!.Ptr + (ulong)(_pointerNext++ % PointerSlots * PointerSlotBytes);
        Span<ulong> ptrs = stackalloc ulong[3 * count];
        for (int i = 0; i < count; i++)
        {
            ptrs[i] = w[i].Ptr;             // cuBLAS's A (column-major: w^T)
            ptrs[count + i] = xn.Ptr;       // its B
            ptrs[2 * count + i] = y[i].OverwritePtr;
        }
        UploadTo(slot, (ReadOnlySpan<ulong>)ptrs);
        float alpha = 1f, beta = 0f;
        int type = xn.DType == DType.F16 ? Cublas.CUDA_R_16F : Cublas.CUDA_R_16BF;
        Cublas.Check(Cublas.cublasGemmBatchedEx(_blas.Handle, Cublas.CUBLAS_OP_N, Cublas.CUBLAS_OP_N, n, m, k, &alpha,
                slot, type, n, slot + (ulong)(8 * count), type, k, &beta, slot + (ulong)(16 * count), Cublas.CUDA_R_32F, n,
                count, Cublas.CUBLAS_COMPUTE_32F, Cublas.CUBLAS_GEMM_DEFAULT),
            $"cublasGemmBatchedEx(M={m}, N={n}, K={k}, batch {count}, {xn.DType})");
    }

    // x [T, in] float32, w [in, out], b [out] (optional), y [T, out] float32
    private static (CudaTensor X, CudaTensor W, CudaTensor Y) CheckLinear(string op, Tensor x, Tensor w, Tensor? b, Tensor y)
    {
        var cx = F(x, "x");
        var cw = C(w, "w");
        var cy = F(y, "y");
        if (cw.Shape.Length != 2 || cx.Cols != cw.Rows || cy.Rows != cx.Rows || cy.Cols != cw.Cols)
            throw new ArgumentException($"{op}: x {cx} . w {cw} -> y {cy}");
        if (b is not null && C(b, "b").Length != cw.Cols) throw new ArgumentException($"{op}: bias {b} is not [{cw.Cols}]");
        if (cx.RawPtr == cy.RawPtr) throw new ArgumentException($"{op}: y must not alias x");
        return (cx, cw, cy);
    }

    private bool GemvApplies(CudaTensor x, CudaTensor w) => UseGemv && x.Rows == 1 && x.Cols > 0 && w.Cols > 0;

    /// <summary>
    /// y_z [1, N_z] = x [1, K] · W_z [K, N_z] + b_z for up to three weights in one launch of
    /// gemv_xw; for z = 0 also + residual and key = act(y). Splits K so that about
    /// <see cref="GemvBlocksPerSm"/> blocks per SM run.
    /// </summary>
    private void Gemv(CudaTensor x, ReadOnlySpan<(CudaTensor W, Tensor? B, CudaTensor Y)> mats, Tensor? residual, CudaTensor? key, Activation act)
    {
        int K = x.Cols, Z = mats.Length;
        var dt = mats[0].W.DType;
        if (TransposedWeightCopies && TwinsOf(mats) is { } twins)
        {
            GemvTwins(x, mats, twins, residual, key, act);
            return;
        }
        var ops = new GemvMat[Z];
        for (int z = 0; z < Z; z++) ops[z] = new GemvMat(mats[z].W.Ptr, mats[z].W.Cols, mats[z].B, mats[z].Y);
        var (w, bp, yp, n, bdt, nMax, rp) = GemvOperands(ops, residual);
        ulong align = dt == DType.F32 ? 32UL : 16UL;
        bool vec = true;
        for (int z = 0; z < Z; z++) vec &= n[z] % 8 == 0 && w[z] % align == 0;

        int colBlocks = (nMax + GemvCols - 1) / GemvCols;
        int target = GemvBlocksPerSm * Math.Max(1, Device.Multiprocessors);
        int splits = (target + colBlocks * Z - 1) / (colBlocks * Z);
        splits = Math.Clamp(splits, 1, Math.Max(1, Math.Min(64, K / 32))); // at least 32 rows (4 per warp) per split
        while (splits > 1 && (long)Z * splits * nMax > GemvPartialFloats) splits--;
        if (Z * colBlocks > GemvCounters) splits = 1;
        _k.Gemv.gemv_xw(dt, Grid((uint)colBlocks, (uint)splits, (uint)Z, Block),
            x.Ptr, K, w[0], w[1], w[2], bp[0], bp[1], bp[2], bdt, yp[0], yp[1], yp[2], n[0], n[1], n[2],
            rp, key is null ? 0UL : key.OverwritePtr, (int)act,
            _gemvPartials!.Ptr, _gemvCounters!.Ptr, vec ? 1 : 0);
    }

    /// <summary>
    /// One-row products of narrow weights read a transposed copy ("twin", [out, in]) kept with the
    /// weight, so that each output is one warp's dot product over contiguous memory (gemv_wt, no
    /// split over K): 2.8 TB/s on the head against 1.5 for gemv_xw on [in, out] (run 7c). The twin
    /// costs the weight's memory again; it is made on first use and remade after any write to the
    /// weight (<see cref="CudaTensor.Version"/>). Off: gemv_xw on the weight itself.
    /// </summary>
    public bool TransposedWeightCopies { get; set; } = true;

    // The up-to-date twins of every weight, or null: float32 weights, views, and (during a graph
    // capture, which cannot allocate) weights without a current twin go through gemv_xw.
    private CudaTensor[]? TwinsOf(ReadOnlySpan<(CudaTensor W, Tensor? B, CudaTensor Y)> mats)
    {
        var twins = new CudaTensor[mats.Length];
        for (int z = 0; z < mats.Length; z++)
        {
            var w = mats[z].W;
            if (w.DType == DType.F32 || w.IsView || w.Shape.Length != 2) return null;
            if (w.Twin is { } t && w.TwinVersion == w.Version) { twins[z] = t; continue; }
            if (_capture is not null) return null;
            w.Twin?.Dispose();
            w.Twin = null;
            var twin = New(w.DType, [w.Cols, w.Rows]);
            const int tile = TransposeTile;
            _k.Gemv.transpose_u16(Grid((uint)((w.Cols + tile - 1) / tile), (uint)((w.Rows + tile - 1) / tile), 1, Block),
                w.Ptr, twin.OverwritePtr, w.Rows, w.Cols);
            w.Twin = twin;
            w.TwinVersion = w.Version;
            twins[z] = twin;
        }
        return twins;
    }

    /// <summary>One product of a gemv launch: the weight's address (as the kernel reads it), its output width, bias and output.</summary>
    private readonly record struct GemvMat(ulong W, int N, Tensor? B, CudaTensor Y);

    // The kernel arguments of up to three products: weight, bias and output addresses, widths, the
    // biases' one type, the widest N, and the residual's address. The residual's is taken first: it
    // may be an output itself (MatMul's accumulate), whose pending zero-fill must then be done, not
    // dropped by the output's OverwritePtr.
    private static (ulong[] W, ulong[] B, ulong[] Y, int[] N, int Bdt, int NMax, ulong Res) GemvOperands(ReadOnlySpan<GemvMat> mats, Tensor? residual)
    {
        ulong rp = residual is null ? 0UL : F(residual, "residual").Ptr;
        var w = new ulong[3]; var bp = new ulong[3]; var yp = new ulong[3]; var n = new int[3];
        int nMax = 0, bdt = -1;
        for (int z = 0; z < mats.Length; z++)
        {
            var m = mats[z];
            w[z] = m.W; n[z] = m.N; yp[z] = m.Y.RawPtr == rp ? m.Y.Ptr : m.Y.OverwritePtr;
            if (m.B is not null)
            {
                var cb = C(m.B, "b");
                bp[z] = cb.Ptr;
                if (bdt >= 0 && DTypeCode(cb.DType) != bdt) throw new ArgumentException("Gemv: biases of different types");
                bdt = DTypeCode(cb.DType);
            }
            nMax = Math.Max(nMax, m.N);
        }
        return (w, bp, yp, n, Math.Max(bdt, 0), nMax, rp);
    }

    // gemv_wt over the twins: y_z = x · W_z + b_z (+ residual, key = act(y) for z = 0)
    private void GemvTwins(CudaTensor x, ReadOnlySpan<(CudaTensor W, Tensor? B, CudaTensor Y)> mats, CudaTensor[] twins,
        Tensor? residual, CudaTensor? key, Activation act)
    {
        var ops = new GemvMat[mats.Length];
        for (int z = 0; z < mats.Length; z++) ops[z] = new GemvMat(twins[z].Ptr, mats[z].W.Cols, mats[z].B, mats[z].Y);
        GemvWt(x, mats[0].W.DType, ops, residual, key, act);
    }

    /// <summary>c [1, N] = a [1, K] · b^T, b [N, K] narrow or float32 (a tied head in a decode step): gemv_wt.</summary>
    private void GemvTransposed(CudaTensor a, CudaTensor b, CudaTensor c, bool accumulate) =>
        // accumulate: c = c + a . b^T, c as the epilogue's residual
        GemvWt(a, b.DType, [new GemvMat(b.Ptr, b.Rows, null, c)], accumulate ? c : null, null, Activation.GeluTanh);

    // y_z [1, N_z] = x [1, K] · W_zᵀ (+ b_z; for z = 0 + residual, key = act(y)), W_z [N_z, K] stored as dt: one gemv_wt launch
    private void GemvWt(CudaTensor x, DType dt, ReadOnlySpan<GemvMat> mats, Tensor? residual, CudaTensor? key, Activation act)
    {
        int K = x.Cols;
        var (w, bp, yp, n, bdt, nMax, rp) = GemvOperands(mats, residual);
        ulong align = dt == DType.F32 ? 32UL : 16UL;
        bool vec = K % 8 == 0 && x.Ptr % 32 == 0;
        for (int z = 0; z < mats.Length; z++) vec &= w[z] % align == 0;
        long blocks = ((long)nMax * 32 + Block - 1) / Block;
        _k.Gemv.gemv_wt(dt, Grid((uint)blocks, (uint)mats.Length, 1, Block),
            x.Ptr, K, w[0], w[1], w[2], bp[0], bp[1], bp[2], bdt, yp[0], yp[1], yp[2], n[0], n[1], n[2],
            rp, key is null ? 0UL : key.OverwritePtr, (int)act, vec ? 1 : 0);
    }
}
