using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// The fast CPU backend: float32 storage and arithmetic, TensorPrimitives for elementwise and row
/// ops, the blocked <see cref="Gemm"/> for MatMul, attention spread over heads. Its semantics are
/// those of <see cref="ReferenceBackend"/> (tested op by op against it).
///
/// Not thread-safe: an instance keeps scratch buffers (softmax rows, attention scores, the rotary
/// table) and loop jobs that it reuses from call to call so that a decode step allocates nothing
/// in the backend once warm. Use one instance per thread that drives a model; the ops themselves
/// run on the instance's own worker threads (dispose the backend to stop them).
/// </summary>
public sealed partial class SimdBackend : IBackend, ISiblingBackend, IGatedBackend, IDirectWeights
{
    private readonly SimdWorkers _workers;
    private readonly AttentionJob _attention = new();
    private readonly AttentionBackwardJob _attentionBackward = new();

    /// <param name="threads">Threads the ops use, the caller's included (≤ 0: one per core).</param>
    /// <param name="weights">How <see cref="Runtime.Model.Load"/> stores a checkpoint's matrices here (see <see cref="CpuWeights"/>).</param>
    public SimdBackend(int threads = 0, CpuWeights weights = CpuWeights.Auto)
        : this(threads, weights, new PackBudget(PackBudget.Default())) { }

    private SimdBackend(int threads, CpuWeights weights, PackBudget packBudget)
    {
        _workers = new SimdWorkers(threads > 0 ? threads : Environment.ProcessorCount);
        Weights = weights;
        _packBudget = packBudget;
    }

    private PackBudget _packBudget;

    /// <summary>
    /// Bytes this backend and its siblings may spend on packed copies of float32 weights (default: a
    /// quarter of the memory the process may use; 0: none; and no copy larger than half of what the
    /// OS has available when it would be made). A prefill (2 to 1024 rows) reads a weight
    /// that has one straight from it instead of packing it again on every product; a weight
    /// beyond the budget keeps the GEMM that packs as it goes. Results are the same either way.
    /// Set it before the first prefill.
    /// </summary>
    public long PackedWeightBudget
    {
        get => _packBudget.Limit;
        set => _packBudget = new PackBudget(Math.Max(0, value));
    }

    /// <summary>Bytes held now by packed copies of weights made under this backend's budget.</summary>
    public long PackedWeightBytes => _packBudget.Used;

    /// <summary>How a checkpoint's matrices are stored when a model is loaded onto this backend.</summary>
    public CpuWeights Weights { get; }

    /// <summary>
    /// The parameters straight from the files, tensor by tensor: 16-bit matrices as they are (or are
    /// to be), float32/float64 ones as float32 weights; null (load through float32 host copies of the
    /// whole checkpoint, as before) for <see cref="CpuWeights.F32"/>.
    /// </summary>
    public ParamSet<Tensor>? LoadDirect(ModelConfig config, SafetensorsSet set)
    {
        DType? target = Weights switch { CpuWeights.BF16 => DType.BF16, CpuWeights.F16 => DType.F16, _ => null };
        if (Weights == CpuWeights.F32) return null;
        // float32 files too: tensor by tensor, so at most one tensor's host copy lives at a time (the
        // host path read the whole checkpoint into host arrays first: GPT2-XL float32 held 12.9 GB
        // after load for its 6.2 GB of weights)
        return Architectures.Read(config, new SimdWeightSource(this, set, target));
    }

    /// <summary>Whether a 16-bit matrix reads the memory map in place (float32 tensors and owned 16-bit copies do not).</summary>
    public bool ReadsTheFiles(ParamSet<Tensor> parameters) => parameters.Named().Any(nt => nt.Value is SimdHalfTensor { InPlace: true });

    /// <summary>Threads the ops run on.</summary>
    public int Threads => _workers.Threads;

    /// <summary>A new SimdBackend (own scratch, own workers) for another thread; it can compute on this one's tensors.</summary>
    public IBackend CreateSibling(int threads) => new SimdBackend(threads, Weights, _packBudget);

    /// <summary>Passed before every MatMul and attention (forward and backward); null: never waits. A sibling does not inherit it.</summary>
    public IOpGate? Gate { get; set; }

    public string Name => "cpu-f32";
    public DType Compute => DType.F32;
    /// <summary>Attention masks by each query's visible keys (OpShapes.VisibleKeys), whatever their number.</summary>
    public bool SlidingWindowAttention => true;

    // Scratch reused across calls (see the class comment); grown on demand, never shrunk.
    private float[] _rowA = [], _rowB = [], _scores = [];

    private static SimdTensor Own(Tensor t) => t as SimdTensor
        ?? throw new ArgumentException($"tensor {t} does not belong to the {nameof(SimdBackend)}");

    /// <summary>The storage array (for row-offset access; may extend past the tensor, see <see cref="RowPrefix"/>);
    /// for a 16-bit weight, its float32 copy once an edit has written it.</summary>
    private static float[] F(Tensor t) => t is SimdTensor s ? s.Data : NotFloat(t);

    /// <summary>The storage, for reading only: a weight's packed copy stays valid (see <see cref="SimdTensor.Data"/>).</summary>
    private static float[] R(Tensor t) => t is SimdTensor s ? s.Storage : NotFloat(t);

    /// <summary>Exactly the tensor's elements.</summary>
    private static Span<float> S(Tensor t) => t is SimdTensor s ? s.Span : NotFloat(t);

    private static float[] NotFloat(Tensor t)
    {
        if (t is SimdHalfTensor h)
            return h.Promoted ?? throw new ArgumentException($"tensor {t} is a 16-bit weight: ops read it only as MatMul's b, in Embed and in ToHost");
        throw new ArgumentException($"tensor {t} does not belong to the {nameof(SimdBackend)}");
    }

    private static Span<float> Grow(ref float[] buf, long n)
    {
        if (buf.LongLength < n) buf = new float[Math.Max(n, buf.LongLength * 3 / 2)];
        return buf.AsSpan(0, checked((int)n));
    }

    private static void SameLength(Tensor a, Tensor b, string what)
    {
        if (a.Length != b.Length) throw new ArgumentException($"{what}: lengths differ ({a} vs {b})");
    }

    private static void CheckLength(long have, Tensor t, string what)
    {
        if (have != t.Length) throw new ArgumentException($"{what}: {have} values, tensor {t} has {t.Length}");
    }

    // ---------------- memory ----------------

    public Tensor Zeros(params int[] shape) => new SimdTensor(new float[ShapeLength(shape)], shape);

    private static long ShapeLength(int[] shape)
    {
        long n = 1;
        foreach (var s in shape)
        {
            if (s < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape)}]");
            n *= s;
        }
        return n;
    }

    public Tensor FromHost(ReadOnlySpan<double> src, params int[] shape)
    {
        var t = Zeros(shape);
        Upload(t, src);
        return t;
    }

    public Tensor FromHost(ReadOnlySpan<float> src, params int[] shape)
    {
        var t = Zeros(shape);
        CheckLength(src.Length, t, "FromHost");
        src.CopyTo(S(t));
        return t;
    }

    /// <summary>A weight: as <see cref="FromHost(ReadOnlySpan{float}, int[])"/>, in storage that may get huge pages (<see cref="HugePages"/>).</summary>
    public Tensor Weight(ReadOnlySpan<float> src, params int[] shape)
    {
        var t = new SimdTensor(HugePages.Floats(ShapeLength(shape)), shape) { IsWeight = true };
        CheckLength(src.Length, t, "Weight");
        src.CopyTo(S(t));
        return t;
    }

    /// <summary>Rounds float64 weights to float32 (round to nearest even, as a cast does), into storage that may get huge pages.</summary>
    public Tensor Weight(ReadOnlySpan<double> src, params int[] shape)
    {
        var t = new SimdTensor(HugePages.Floats(ShapeLength(shape)), shape) { IsWeight = true };
        Upload(t, src);
        return t;
    }

    public void ToHost(Tensor t, Span<double> dst)
    {
        CheckLength(dst.Length, t, "ToHost");
        if (t is SimdHalfTensor { Promoted: null } h) { h.CopyTo(dst); return; }
        var d = S(t);
        for (int i = 0; i < d.Length; i++) dst[i] = d[i];
    }

    public void ToHost(Tensor t, Span<float> dst)
    {
        CheckLength(dst.Length, t, "ToHost");
        if (t is SimdHalfTensor { Promoted: null } h) { h.CopyTo(dst); return; }
        S(t).CopyTo(dst);
    }

    /// <summary>Overwrites t with src (rounded to float32); a 16-bit weight is promoted to a float32 copy (see <see cref="SimdHalfTensor"/>).</summary>
    public void Upload(Tensor t, ReadOnlySpan<double> src)
    {
        CheckLength(src.Length, t, "Upload");
        if (t is SimdHalfTensor h) { h.Write(src); return; }
        var d = S(t);
        for (int i = 0; i < d.Length; i++) d[i] = (float)src[i];
    }

    public void Zero(Tensor t) => S(t).Clear();

    /// <summary>[rows, t.Cols] over the first rows of t, sharing its storage (the KV cache prefix).</summary>
    public Tensor RowPrefix(Tensor t, int rows)
    {
        if (rows < 0 || rows > t.Rows) throw new ArgumentOutOfRangeException(nameof(rows), $"RowPrefix: {rows} rows of {t}");
        return t is SimdTensor st ? SimdTensor.View(st, [rows, t.Cols]) : SimdTensor.View(F(t), [rows, t.Cols]);
    }

    public void CopyRows(Tensor src, int srcRow, Tensor dst, int dstRow, int rows)
    {
        OpShapes.CopyRows(src, srcRow, dst, dstRow, rows);
        int c = src.Cols;
        Array.Copy(F(src), (long)srcRow * c, F(dst), (long)dstRow * c, (long)rows * c);
    }

    public void Dispose() => _workers.Dispose();

    // ---------------- linear algebra ----------------

    // c [M, N] (+)= op(a) [M, K] · op(b) [K, N]
    public void MatMul(Tensor a, bool transA, Tensor b, bool transB, Tensor c, bool accumulate = false)
    {
        Gate?.Pass();
        var (m, n, k) = OpShapes.MatMul(a, transA, b, transB, c);
        if (b is SimdHalfTensor { Promoted: null } h)
        {
            // stored transposed: the same product is the GEMM with the other transB flag on the storage
            Gemm.SgemmHalf(transA, transB ^ h.Transposed, m, n, k, R(a), a.Cols, h.Bits, h.Ld, h.Kind, F(c), n, accumulate, Gemm.DefaultKernel, _workers.Threads, _workers);
            return;
        }
        if (!transA && PackedFor(b, transB, m, n, k) is { } packed)
        {
            Gemm.SgemmPrepacked(false, m, n, k, R(a), a.Cols, packed, F(c), n, accumulate, _workers.Threads, _workers, null);
            return;
        }
        Gemm.Sgemm(transA, transB, m, n, k, R(a), a.Cols, R(b), b.Cols, F(c), n, accumulate, Gemm.DefaultKernel, _workers.Threads, _workers);
    }

    /// <summary>Whether weight b already has a packed copy of op(b) [k, n] for a prefill's product (made, not necessarily fresh); asks for nothing.</summary>
    private static bool HasPacked(Tensor b, int m, int n, int k) =>
        b is SimdTensor { IsWeight: true } w && Gemm.UsePrepacked(m, n) && w.Pack.Packed is { } p && p.Fits(k, n, transB: false);

    /// <summary>The packed copy of weight b (op(b) [k, n]) when c [m, n] = a · op(b) is a prefill's product and the budget allows one; else null.</summary>
    private PackedWeight? PackedFor(Tensor b, bool transB, int m, int n, int k) =>
        b is SimdTensor { IsWeight: true } w && Gemm.UsePrepacked(m, n)
            ? w.Pack.Get(w.Storage, w.Cols, k, n, transB, _packBudget, _workers)
            : null;

    // x [M, N] += bias [N]
    public void AddBias(Tensor x, Tensor bias)
    {
        if (bias.Length != x.Cols) throw new ArgumentException($"AddBias: bias {bias} does not match {x}");
        var X = F(x); ReadOnlySpan<float> b = S(bias); int n = x.Cols;
        for (int r = 0; r < x.Rows; r++)
        {
            var row = X.AsSpan(r * n, n);
            TensorPrimitives.Add(row, b, row);
        }
    }

    // dst [N] (+)= Σ_m x [m, :]
    public void SumRows(Tensor x, Tensor dst, bool accumulate)
    {
        if (dst.Length != x.Cols) throw new ArgumentException($"SumRows: {dst} does not match {x}");
        var X = F(x); var o = S(dst); int n = x.Cols;
        if (!accumulate) o.Clear();
        for (int r = 0; r < x.Rows; r++) TensorPrimitives.Add(o, X.AsSpan(r * n, n), o);
    }

    public void Add(Tensor a, Tensor b, Tensor dst)
    {
        SameLength(a, b, "Add"); SameLength(a, dst, "Add");
        TensorPrimitives.Add(S(a), S(b), S(dst));
    }

    public void Axpy(double alpha, Tensor src, Tensor dst)
    {
        SameLength(src, dst, "Axpy");
        var o = S(dst);
        TensorPrimitives.MultiplyAdd(S(src), (float)alpha, o, o);
    }

    // x [T, d]: x[row] += v [d]
    public void AddToRow(Tensor x, int row, Tensor v)
    {
        int d = x.Cols;
        if (v.Length != d) throw new ArgumentException($"AddToRow: vector {v} does not match row of {x}");
        if (row < 0 || row >= x.Rows) throw new ArgumentOutOfRangeException(nameof(row), $"AddToRow: row {row} outside [0, {x.Rows})");
        var r = F(x).AsSpan(row * d, d);
        TensorPrimitives.Add(r, S(v), r);
    }

    // dst [d] (+)= x [T, d] row
    public void GetRow(Tensor x, int row, Tensor dst, bool accumulate)
    {
        int d = x.Cols;
        if (dst.Length != d) throw new ArgumentException($"GetRow: {dst} does not match row of {x}");
        if (row < 0 || row >= x.Rows) throw new ArgumentOutOfRangeException(nameof(row), $"GetRow: row {row} outside [0, {x.Rows})");
        var r = F(x).AsSpan(row * d, d); var o = S(dst);
        if (accumulate) TensorPrimitives.Add(o, r, o);
        else r.CopyTo(o);
    }

    // ---------------- embeddings ----------------

    // dst [T, d] = wte [V, d][ids] (+ wpe [P, d][posOffset + t])
    public void Embed(ReadOnlySpan<int> ids, Tensor wte, Tensor? wpe, int posOffset, Tensor dst)
    {
        int d = wte.Cols, vocab = wte.Rows;
        if (dst.Rows != ids.Length || dst.Cols != d) throw new ArgumentException($"Embed: dst {dst} is not [{ids.Length}, {d}]");
        if (wpe is not null && wpe.Cols != d) throw new ArgumentException($"Embed: wpe {wpe} does not match wte {wte}");
        var O = F(dst);
        for (int t = 0; t < ids.Length; t++)
        {
            int id = ids[t];
            if ((uint)id >= (uint)vocab) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} at position {t} is outside the vocabulary [0, {vocab})");
            var o = O.AsSpan(t * d, d);
            ReadOnlySpan<float> e = WeightRow(wte, id, ref _rowA);
            if (wpe is null) { e.CopyTo(o); continue; }
            int pos = posOffset + t;
            if ((uint)pos >= (uint)wpe.Rows) throw new ArgumentOutOfRangeException(nameof(posOffset), $"position {pos} is outside the context [0, {wpe.Rows})");
            TensorPrimitives.Add(e, WeightRow(wpe, pos, ref _rowB), o);
        }
    }

    /// <summary>Row r [Cols] of a weight: a slice of its float32 storage, or a 16-bit weight's row widened into buf.</summary>
    private static ReadOnlySpan<float> WeightRow(Tensor w, int r, ref float[] buf)
    {
        int d = w.Cols;
        if (w is not SimdHalfTensor { Promoted: null } h) return R(w).AsSpan(r * d, d);
        var row = Grow(ref buf, d);
        h.ReadRow(r, row);
        return row;
    }

    public void EmbedBackward(ReadOnlySpan<int> ids, Tensor dy, Tensor dwte, Tensor? dwpe, int posOffset)
    {
        int d = dwte.Cols;
        if (dy.Rows != ids.Length || dy.Cols != d) throw new ArgumentException($"EmbedBackward: dy {dy} is not [{ids.Length}, {d}]");
        var G = F(dy); var E = F(dwte); var P = dwpe is null ? null : F(dwpe);
        for (int t = 0; t < ids.Length; t++)
        {
            int id = ids[t];
            if ((uint)id >= (uint)dwte.Rows) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} at position {t} is outside the vocabulary [0, {dwte.Rows})");
            var g = G.AsSpan(t * d, d);
            var e = E.AsSpan(id * d, d);
            TensorPrimitives.Add(e, g, e);
            if (P is null) continue;
            int pos = posOffset + t;
            if ((uint)pos >= (uint)dwpe!.Rows) throw new ArgumentOutOfRangeException(nameof(posOffset), $"position {pos} is outside the context [0, {dwpe.Rows})");
            var p = P.AsSpan(pos * d, d);
            TensorPrimitives.Add(p, g, p);
        }
    }
}
