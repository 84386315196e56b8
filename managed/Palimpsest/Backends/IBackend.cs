using Palimpsest.Tensors;

namespace Palimpsest.Backends;

/// <summary>
/// The op list every backend implements: a float64 reference (plain loops), a float32 SIMD CPU
/// backend, and CUDA. The transformer forward and backward are written once against this.
///
/// Conventions: every tensor is row-major and contiguous; a "matrix" is viewed as [Rows, Cols]
/// (all but the last dimension folded into rows). Weight matrices are stored [in, out] so a
/// linear layer is y = x · W (+ b). Output tensors are overwritten unless the parameter says
/// "accumulate". Gradients of weights always accumulate (they are zeroed by the caller).
/// </summary>
public interface IBackend : IDisposable, IFusedLinear
{
    /// <summary>Short name for reports: "cpu-f64", "cpu-f32", "cuda-f32", ...</summary>
    string Name { get; }

    /// <summary>Element type of activations this backend computes in (F64 or F32).</summary>
    DType Compute { get; }

    // ---------------- memory ----------------

    /// <summary>New zero-filled activation tensor of <paramref name="shape"/>.</summary>
    Tensor Zeros(params int[] shape);

    /// <summary>Copies host data into a new tensor (converted to <see cref="Compute"/>).</summary>
    Tensor FromHost(ReadOnlySpan<double> src, params int[] shape);

    /// <summary>Copies host data into a new tensor (converted to <see cref="Compute"/>).</summary>
    Tensor FromHost(ReadOnlySpan<float> src, params int[] shape);

    /// <summary>
    /// Uploads a weight. A backend may keep weights in a narrower type than <see cref="Compute"/>
    /// (fp16/bf16 on CUDA); the ops then read it with fp32 accumulation.
    /// </summary>
    Tensor Weight(ReadOnlySpan<float> src, params int[] shape);

    /// <summary>Weight from float64 host data (float64 checkpoints and edited weights).</summary>
    Tensor Weight(ReadOnlySpan<double> src, params int[] shape);

    /// <summary>Copies a tensor to the host, converting to float64. dst.Length == t.Length.</summary>
    void ToHost(Tensor t, Span<double> dst);

    /// <summary>Copies a tensor to the host, converting to float32. dst.Length == t.Length.</summary>
    void ToHost(Tensor t, Span<float> dst);

    /// <summary>Overwrites the whole tensor with host data (same length), converting.</summary>
    void Upload(Tensor t, ReadOnlySpan<double> src);

    /// <summary>Sets every element to zero.</summary>
    void Zero(Tensor t);

    /// <summary>
    /// A tensor of shape [rows, t.Cols] over the first <paramref name="rows"/> rows of t, sharing its
    /// storage (no copy). Used for the KV cache: attention reads the filled prefix of the cache.
    /// Writes through the view are visible in t. Disposing the view does not free t's storage.
    /// </summary>
    Tensor RowPrefix(Tensor t, int rows);

    /// <summary>dst[dstRow + r, :] = src[srcRow + r, :] for r in [0, rows). Both 2-D with equal Cols.</summary>
    void CopyRows(Tensor src, int srcRow, Tensor dst, int dstRow, int rows);

    // ---------------- linear algebra ----------------

    /// <summary>
    /// c [M, N] (+)= op(a) [M, K] · op(b) [K, N], op = transpose when the flag is set
    /// (a stored [K, M] when transA; b stored [N, K] when transB). Accumulates when
    /// <paramref name="accumulate"/>, else overwrites.
    /// </summary>
    void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, bool accumulate = false);

    /// <summary>x [M, N] += bias [N] on every row.</summary>
    void AddBias(Tensor x, Tensor bias);

    /// <summary>dst [N] (+)= Σ_m x [m, :]  (bias gradient).</summary>
    void SumRows(Tensor x, Tensor dst, bool accumulate);

    /// <summary>dst = a + b elementwise (same length); dst may alias a or b.</summary>
    void Add(Tensor a, Tensor b, Tensor dst);

    /// <summary>dst += alpha · src elementwise (same length).</summary>
    void Axpy(double alpha, Tensor src, Tensor dst);

    /// <summary>x [T, d]: x[row, :] += v [d]  (an intervention added at one position).</summary>
    void AddToRow(Tensor x, int row, Tensor v);

    /// <summary>dst [d] (+)= x [T, d] row <paramref name="row"/>  (gradient of an intervention).</summary>
    void GetRow(Tensor x, int row, Tensor dst, bool accumulate);

    // ---------------- linear layers (IFusedLinear) ----------------
    // By default the plain composition (ComposedLinear); a backend where a launch costs more than
    // the arithmetic around it fuses the epilogues (CudaBackend.Linear.cs).

    void IFusedLinear.Linear(Tensor x, Tensor w, Tensor? b, Tensor y, Tensor? residual) => ComposedLinear.Linear(this, x, w, b, y, residual);

    void IFusedLinear.LinearAct(Activation act, Tensor x, Tensor w, Tensor? b, Tensor up, Tensor key) => ComposedLinear.LinearAct(this, act, x, w, b, up, key);

    void IFusedLinear.Linear3(Tensor x, Tensor w0, Tensor? b0, Tensor y0, Tensor w1, Tensor? b1, Tensor y1, Tensor w2, Tensor? b2, Tensor y2)
        => ComposedLinear.Linear3(this, x, w0, b0, y0, w1, b1, y1, w2, b2, y2);

    void IFusedLinear.LinearBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, Tensor? dw, Tensor? db, bool accumulateInput)
        => ComposedLinear.LinearBackward(this, x, w, dy, dx, dw, db, accumulateInput);

    // ---------------- embeddings ----------------

    /// <summary>
    /// dst [T, d] = wte [V, d] rows of ids [T] (+ wpe [P, d] row posOffset + t when wpe is given).
    /// Throws when an id is outside [0, V) or a position outside [0, P).
    /// </summary>
    void Embed(ReadOnlySpan<int> ids, Tensor wte, Tensor? wpe, int posOffset, Tensor dst);

    /// <summary>dwte[ids[t]] += dy[t]; dwpe[posOffset + t] += dy[t] (dwpe optional).</summary>
    void EmbedBackward(ReadOnlySpan<int> ids, Tensor dy, Tensor dwte, Tensor? dwpe, int posOffset);

    // ---------------- norms ----------------

    /// <summary>
    /// y [T, d] = (x - mean) · rstd · g [d] (+ b [d]); saves mean [T] and rstd [T] for the backward.
    /// </summary>
    void LayerNorm(Tensor x, Tensor g, Tensor? b, double eps, Tensor y, Tensor mean, Tensor rstd);

    /// <summary>dx [T, d] += ∂; dg [d] += ∂; db [d] += ∂ (dg/db may be null: frozen weights).</summary>
    void LayerNormBackward(Tensor dy, Tensor x, Tensor g, Tensor mean, Tensor rstd, Tensor dx, Tensor? dg, Tensor? db);

    /// <summary>y [T, d] = x · rstd · g, rstd = 1/sqrt(mean(x²) + eps); saves rstd [T].</summary>
    void RmsNorm(Tensor x, Tensor g, double eps, Tensor y, Tensor rstd);

    /// <summary>dx [T, d] += ∂; dg [d] += ∂ (dg may be null).</summary>
    void RmsNormBackward(Tensor dy, Tensor x, Tensor g, Tensor rstd, Tensor dx, Tensor? dg);

    // ---------------- activations ----------------

    /// <summary>y = act(x) elementwise (GeluTanh, GeluErf, Relu, Silu).</summary>
    void Activate(Activation act, Tensor x, Tensor y);

    /// <summary>dx = act'(x) · dy (overwrites dx).</summary>
    void ActivateBackward(Activation act, Tensor x, Tensor dy, Tensor dx);

    /// <summary>y [T, f] = silu(gate [T, f]) · up [T, f]  (SwiGLU).</summary>
    void SiluMul(Tensor gate, Tensor up, Tensor y);

    /// <summary>dgate, dup [T, f] (overwritten) from dy [T, f].</summary>
    void SiluMulBackward(Tensor gate, Tensor up, Tensor dy, Tensor dgate, Tensor dup);

    // ---------------- rotary ----------------

    /// <summary>
    /// In place on x [T, heads·headDim]: rotates the first rotaryDim dims of each head by the
    /// angle (posOffset + t) · inv_freq_i (theta^(-2i/rotaryDim), scaled as <see cref="RopeFrequencies"/> says). interleaved: pairs (2i, 2i+1) (GPT-J);
    /// else half-split pairs (i, i + rotaryDim/2) (GPT-NeoX, Llama). inverse rotates by the
    /// negative angle (this is the backward).
    /// </summary>
    void Rope(Tensor x, int heads, int headDim, int rotaryDim, bool interleaved, RopeFrequencies rope, int posOffset, bool inverse);

    /// <summary>
    /// <see cref="Rope"/> will be asked for positions [0, <paramref name="positions"/>) (a KV cache's
    /// capacity): a backend that keeps a table of angles builds it for all of them now, so that no
    /// decode step grows it. The default does nothing.
    /// </summary>
    void ReserveRope(int positions, int rotaryDim, RopeFrequencies rope) { }

    // ---------------- attention ----------------

    /// <summary>
    /// Causal scaled-dot-product attention with grouped heads.
    /// q [T, H·hd], k [S, Hkv·hd], v [S, Hkv·hd] -> o [T, H·hd]; query t is at absolute position
    /// i = S - T + t and sees keys 0..i, or with a sliding <paramref name="window"/> &gt; 0 only the keys j
    /// with i − window &lt; j ≤ i (itself and the window − 1 before it: transformers' sliding_window_overlay,
    /// masking_utils.py); window 0 = no window. Head h uses kv head h / (H / Hkv); scale 1/sqrt(hd).
    /// probs [H, T, S] (optional) receives the softmax for the backward (0 where masked).
    /// </summary>
    void Attention(Tensor q, Tensor k, Tensor v, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs, int window = 0);

    /// <summary>
    /// <see cref="Attention"/> over the first <paramref name="kvRows"/> rows of k and v (the filled
    /// prefix of a KV cache): q [T, H·hd], k, v [≥ kvRows, Hkv·hd] -> o [T, H·hd]. The same as
    /// Attention(q, RowPrefix(k, kvRows), RowPrefix(v, kvRows), ...); a backend whose decode step
    /// should allocate nothing reads the prefix in place instead of making the two views. With a
    /// window only the last rows are read, so the cache's keys may start anywhere before them.
    /// </summary>
    void AttentionPrefix(Tensor q, Tensor k, Tensor v, int kvRows, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs, int window = 0)
        => Attention(q, RowPrefix(k, kvRows), RowPrefix(v, kvRows), heads, kvHeads, headDim, o, probs, window);

    /// <summary>
    /// Whether <see cref="Attention"/> honours a sliding window over any number of keys. Then a
    /// <see cref="Runtime.KvCache"/> keeps only the last rows of a sliding layer (memory O(window)
    /// rather than O(context)); otherwise it keeps every row. False by default: a backend whose
    /// kernels refuse a window that masks a key (CUDA) keeps its cache and its refusal as they were.
    /// </summary>
    bool SlidingWindowAttention => false;

    /// <summary>
    /// Backward of <see cref="Attention"/> (with the same window) given the saved probs: dq [T, H·hd],
    /// dk, dv [S, Hkv·hd] are overwritten. The probs are 0 outside the window, so the window only lets
    /// a backend skip those keys.
    /// </summary>
    void AttentionBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, int heads, int kvHeads, int headDim,
        Tensor dq, Tensor dk, Tensor dv, int window = 0);

    // ---------------- losses ----------------

    /// <summary>lp [R, V] = log_softmax(logits [R, V]) row-wise.</summary>
    void LogSoftmax(Tensor logits, Tensor lp);

    /// <summary>
    /// Mean negative log-likelihood Σ_r w_r · (−log p_r[targets[r]]) / Σ_r w_r over rows with
    /// targets[r] ≥ 0 (w_r = 1 unless weights given). When dlogits [R, V] is given it is
    /// accumulated with the gradient of that loss times <paramref name="scale"/>.
    /// </summary>
    double CrossEntropy(Tensor logits, ReadOnlySpan<int> targets, Tensor? dlogits, double scale = 1.0);

    /// <summary>
    /// KL(P || Q) summed over rows, P = softmax(logits [R, V]), log Q = refLogProbs [R, V], divided by R
    /// ("batchmean"). dlogits [R, V] (optional) accumulates its gradient times scale.
    /// </summary>
    double KlDivergence(Tensor logits, Tensor refLogProbs, Tensor? dlogits, double scale = 1.0);
}

/// <summary>
/// Optional op of a backend: attention over packed independent sequences in one call. Without it
/// the Transformer attends segment by segment (a few copies and one Attention per segment and
/// layer), which costs nothing on a CPU but thousands of launches per step on a GPU.
/// </summary>
public interface ISegmentAttention
{
    /// <summary>
    /// q [T, H·hd], k, v [T, Hkv·hd] hold sequences of these lengths (each ≥ 1, summing to T) end
    /// to end, already rotated from position 0 of their own segment -> o [T, H·hd]: row t of a
    /// segment starting at row s sees keys s..t only. probs [H, T, T] (optional) receives the
    /// softmax, 0 outside each row's segment, so that <see cref="IBackend.AttentionBackward"/>
    /// over the whole [T, ·] (S = T) is this op's backward.
    /// </summary>
    void AttentionSegments(Tensor q, Tensor k, Tensor v, ReadOnlySpan<int> lengths, int heads, int kvHeads, int headDim, Tensor o, Tensor? probs);

    /// <summary>
    /// Backward of <see cref="AttentionSegments"/>: the same as <see cref="IBackend.AttentionBackward"/>
    /// with S = T (dq [T, H·hd], dk, dv [T, Hkv·hd] overwritten), told the segments so that it may skip
    /// the probs that are 0 between them.
    /// </summary>
    void AttentionSegmentsBackward(Tensor dO, Tensor q, Tensor k, Tensor v, Tensor probs, ReadOnlySpan<int> lengths,
        int heads, int kvHeads, int headDim, Tensor dq, Tensor dk, Tensor dv);
}

/// <summary>
/// Optional capability of a backend: record the device work of a piece of code once and replay it
/// with one launch (CUDA graphs), for loops that run the same shapes many times (decode steps, the
/// v*/z* optimisation). A replay reads and writes the very buffers the recording used.
/// </summary>
public interface IGraphCapture
{
    /// <summary>Records <paramref name="work"/> (run it once unrecorded first, so that its buffers are cached).</summary>
    IReplayable Record(Action work);

    /// <summary>Does now any lazy work owed to t (a deferred zero-fill), which a replay would not trigger.</summary>
    void Settle(Tensor t);
}

/// <summary>Recorded device work: <see cref="Launch"/> queues one replay in order with the backend's other work.</summary>
public interface IReplayable : IDisposable
{
    void Launch();
}

/// <summary>
/// Linear layers with their epilogues (bias, residual, activation) and their backward: the
/// transformer runs every linear product of a block through them, whatever the backend, and the
/// backend decides what to fuse. Every backend has them:
/// <see cref="IBackend"/>'s default runs the plain composition (<see cref="ComposedLinear"/>); a
/// backend where a kernel launch costs more than the arithmetic around it (CUDA) fuses them. Each
/// op computes what the composition in its comment computes, in the same order, and tests hold the
/// two together.
/// </summary>
public interface IFusedLinear
{
    /// <summary>
    /// y [T, out] = residual [T, out] + (x [T, in] · w [in, out] + b [out]); residual and b optional.
    /// Composition: MatMul(x, w, y); AddBias(y, b); Add(residual, y, y). y must not alias x or residual.
    /// </summary>
    void Linear(Tensor x, Tensor w, Tensor? b, Tensor y, Tensor? residual = null);

    /// <summary>
    /// up [T, f] = x [T, in] · w [in, f] + b [f]; key [T, f] = act(up). Composition: MatMul, AddBias, Activate.
    /// </summary>
    void LinearAct(Activation act, Tensor x, Tensor w, Tensor? b, Tensor up, Tensor key);

    /// <summary>
    /// y_i [T, out_i] = x [T, in] · w_i [in, out_i] + b_i [out_i] for three weights reading one input
    /// (query, key and value). Composition: three MatMul + AddBias.
    /// </summary>
    void Linear3(Tensor x, Tensor w0, Tensor? b0, Tensor y0, Tensor w1, Tensor? b1, Tensor y1, Tensor w2, Tensor? b2, Tensor y2);

    /// <summary>
    /// Backward of <see cref="Linear"/>: dx [T, in] (+)= dy [T, out] · wᵀ (added when accumulateInput);
    /// dw [in, out] += xᵀ · dy and db [out] += Σ_t dy, each when given. Composition: MatMul(dy, wᵀ, dx),
    /// MatMul(xᵀ, dy, dw, accumulate), SumRows(dy, db, accumulate).
    /// </summary>
    void LinearBackward(Tensor x, Tensor w, Tensor dy, Tensor dx, Tensor? dw, Tensor? db, bool accumulateInput = false);
}
