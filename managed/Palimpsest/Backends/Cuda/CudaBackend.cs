using System.Runtime.InteropServices;
using Palimpsest.Cuda.Interop;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

/// <summary>
/// IBackend on one CUDA device: float32 activations, kernels from kernels/*.cu (embedded PTX),
/// matrix products through cuBLAS. Weights may be stored as float16 or bfloat16 (matrices only;
/// vectors stay float32), read with float32 accumulation. Everything runs in order on the
/// legacy default stream, so host copies and kernels never race. Not thread-safe: one backend
/// per thread of work (each public op rebinds the context to the calling thread, so a backend
/// may move between threads).
/// </summary>
public sealed partial class CudaBackend : IBackend
{
    // Threads per block of most launches: BLOCK of kernels/common.cuh (KernelConstantTests compare
    // this and every other constant the launchers share with the kernels against their #define).
    internal const uint Block = 256;
    // The legacy default stream (implicit ordering with synchronous copies), or while a graph is
    // being captured the capture's stream (which only records; see Capture).
    private IntPtr Stream => _capture?.Stream ?? IntPtr.Zero;

    private readonly CudaContext _ctx;
    private readonly KernelModules _k;
    private readonly CublasHandle _blas;
    private bool _disposed;

    /// <param name="weightStorage">F32, F16 or BF16: how weight matrices are kept on the device.</param>
    /// <param name="allowTf32">Let cuBLAS use TF32 tensor cores for float32 products (off: IEEE float32).</param>
    public CudaBackend(DType weightStorage = DType.F32, bool allowTf32 = false)
    {
        if (weightStorage is not (DType.F32 or DType.F16 or DType.BF16))
            throw new ArgumentException($"weight storage must be F32, F16 or BF16, not {weightStorage}");
        var probe = global::Palimpsest.Cuda.Interop.Cuda.Probe();
        if (!probe.Available) throw new CudaUnavailableException(probe.Reason);
        Device = probe;
        WeightStorage = weightStorage;
        _ctx = new CudaContext();
        try
        {
            KeepPoolMemory();
            _k = new KernelModules();
            _blas = new CublasHandle(null, allowTf32);
            InitGemv();
        }
        catch
        {
            _ctx.Dispose();
            throw;
        }
        _return = Return;
        _memsetZero = SettleZero;
        MaxCachedBytes = Math.Max(4L << 30, (long)(probe.TotalMemory / 4));
        Name = weightStorage switch { DType.F16 => "cuda-f32-wf16", DType.BF16 => "cuda-f32-wbf16", _ => "cuda-f32" };
    }

    public string Name { get; }
    public DType Compute => DType.F32;
    public DType WeightStorage { get; }
    public CudaProbe Device { get; }

    /// <summary>Waits for all queued device work (for timing and before reading results by other means).</summary>
    public void Synchronize()
    {
        Bind();
        _ctx.Synchronize();
    }

    // Tensors are allocated from the stream-ordered pool many times per forward; keeping freed
    // memory in the pool (instead of returning it at every synchronisation) makes that cheap.
    private unsafe void KeepPoolMemory()
    {
        CuDriver.Check(CuDriver.cuDeviceGetDefaultMemPool(out var pool, _ctx.Device), "cuDeviceGetDefaultMemPool");
        ulong keep = ulong.MaxValue;
        CuDriver.Check(CuDriver.cuMemPoolSetAttribute(pool, CuDriver.CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep), "cuMemPoolSetAttribute");
    }

    // ---------------- plumbing ----------------

    private CudaTensor New(DType dtype, int[] shape)
    {
        var probe = new ShapeCheck(shape);
        var buf = Rent(probe.Length * CudaTensor.ElementSize(dtype), dtype, shape);
        var t = new CudaTensor((int[])shape.Clone(), dtype, buf, _return);
        _capture?.Created.Add(t);
        return t;
    }

    // ---- buffer cache ----
    // A forward allocates and frees a few thousand temporaries of the same few sizes; each driver
    // call costs microseconds of host time, which dominates small forwards (decoding). Freed
    // buffers are kept here by exact size and handed out again. Safe without events because every
    // op runs in order on the one legacy stream: work queued on a buffer before its release runs
    // before work queued by its next owner.
    /// <summary>
    /// Cap on the bytes the buffer cache keeps: a quarter of the device's memory, at least 4 GiB
    /// (a v* step of GPT2-XL shapes keeps about 2 GB of activations for its backward, and a
    /// recording of it draws every buffer from the cache). Tests lower it.
    /// </summary>
    internal long MaxCachedBytes { get; set; }

    /// <summary>Bytes held by the buffer cache now, per buffer size.</summary>
    internal IReadOnlyDictionary<long, int> CachedBuffers
    {
        get { lock (_cacheLock) return _cache.Where(kv => kv.Value.Count > 0).ToDictionary(kv => kv.Key, kv => kv.Value.Count); }
    }
    private readonly Dictionary<long, Stack<DeviceBuffer>> _cache = new();
    private readonly object _cacheLock = new();
    private readonly Action<DeviceBuffer> _return;
    private readonly Action<CudaTensor> _memsetZero;
    private long _cachedBytes;

    // dtype, shape: what the buffer is for, named only in the capture error
    private DeviceBuffer Rent(long bytes, DType? dtype = null, int[]? shape = null)
    {
        if (_capture?.TakeFree(bytes) is { } reused) return reused;
        lock (_cacheLock)
        {
            if (_cache.TryGetValue(bytes, out var stack) && stack.Count > 0)
            {
                _cachedBytes -= bytes;
                return stack.Pop();
            }
        }
        // An allocation is no stream operation a graph could record (and would break the capture).
        if (_capture is not null)
            throw new InvalidOperationException($"a {bytes}-byte buffer{(shape is null ? "" : $" ({dtype} [{string.Join(", ", shape)}])")} is not in the cache during graph capture: run the work once uncaptured first, so that its buffers are cached");
        Bind();
        return new DeviceBuffer(bytes, null);
    }

    private void Return(DeviceBuffer b)
    {
        // Buffers freed inside a capture stay with the graph: its replays write into them.
        if (_capture is not null) { _capture.PutFree(b); return; }
        List<DeviceBuffer>? evicted = null;
        bool cached = false;
        lock (_cacheLock)
        {
            if (!_disposed && b.Bytes <= MaxCachedBytes)
            {
                // Over the cap, the buffer just freed wins over cached ones of other sizes: what was
                // freed last is what the next pass (and a graph recording after it) asks for again.
                foreach (var (size, other) in _cache)
                {
                    if (_cachedBytes + b.Bytes <= MaxCachedBytes) break;
                    if (size == b.Bytes) continue;
                    while (other.Count > 0 && _cachedBytes + b.Bytes > MaxCachedBytes)
                    {
                        (evicted ??= []).Add(other.Pop());
                        _cachedBytes -= size;
                    }
                }
                if (_cachedBytes + b.Bytes <= MaxCachedBytes)
                {
                    if (!_cache.TryGetValue(b.Bytes, out var stack)) _cache[b.Bytes] = stack = new Stack<DeviceBuffer>();
                    stack.Push(b);
                    _cachedBytes += b.Bytes;
                    cached = true;
                }
            }
        }
        if (evicted is not null)
        {
            Bind();
            foreach (var e in evicted) e.Dispose();
        }
        if (cached) return;
        if (_disposed)
        {
            // A tensor outlived its backend: free it while the primary context lives on (another
            // backend may hold it); once the context is destroyed its memory went with it.
            try { _ctx.MakeCurrent(); b.Dispose(); }
            catch (CudaException) { }
            return;
        }
        Bind();
        b.Dispose();
    }

    /// <summary>A cached buffer that goes back to the cache on dispose (ids, targets, scratch).</summary>
    private readonly struct Scratch(CudaBackend owner, DeviceBuffer buffer) : IDisposable
    {
        public ulong Ptr => buffer.Ptr;
        public void Dispose() => owner.Return(buffer);
    }

    // The driver's current context is per thread. All backends share device 0's primary context,
    // so binding once per thread that uses this backend is enough.
    private int _boundThread = -1;

    private void Bind()
    {
        int id = Environment.CurrentManagedThreadId;
        if (id == _boundThread) return;
        _ctx.MakeCurrent();
        _boundThread = id;
    }

    private readonly struct ShapeCheck
    {
        public ShapeCheck(int[] shape)
        {
            long n = 1;
            foreach (var s in shape)
            {
                if (s < 0) throw new ArgumentException($"negative dimension in shape [{string.Join(", ", shape)}]");
                n *= s;
            }
            Length = n;
        }
        public long Length { get; }
    }

    private static CudaTensor C(Tensor t, string what) =>
        t as CudaTensor ?? throw new ArgumentException($"{what} is a {t.GetType().Name}, not a tensor of this CUDA backend");

    /// <summary>A float32 tensor of this backend (activations, gradients, outputs).</summary>
    private static CudaTensor F(Tensor t, string what)
    {
        var c = C(t, what);
        if (c.DType != DType.F32) throw new ArgumentException($"{what} must be float32, got {c}");
        return c;
    }

    private static ulong Opt(Tensor? t, string what) => t is null ? 0UL : F(t, what).Ptr;

    /// <summary>A float32 view of any tensor: the tensor itself, or a widened copy freed on dispose.</summary>
    private readonly struct F32View(CudaTensor t, bool owned) : IDisposable
    {
        public ulong Ptr => t.Ptr;
        public void Dispose() { if (owned) t.Dispose(); }
    }

    private F32View Widen(Tensor t, string what)
    {
        var c = C(t, what);
        if (c.DType == DType.F32) return new F32View(c, false);
        var w = New(DType.F32, c.Shape);
        _k.Elementwise.widen_to_f32(PerElement(w.Length), c.Ptr, DTypeCode(c.DType), w.Ptr, w.Length);
        return new F32View(w, true);
    }

    internal static int DTypeCode(DType t) => t switch
    {
        DType.F32 => 0,
        DType.F16 => 1,
        DType.BF16 => 2,
        _ => throw new ArgumentException($"no kernel reads {t}"),
    };

    private static void SameLength(Tensor a, Tensor b, string what)
    {
        if (a.Length != b.Length) throw new ArgumentException($"{what}: lengths differ ({a} vs {b})");
    }

    // Grids of launches. Each binds this thread's context, since a launch follows at once.

    /// <summary>One block of 256 threads per row.</summary>
    private KernelGrid PerRow(int rows)
    {
        Bind();
        return new KernelGrid((uint)rows, 1, 1, Block, 0, Stream);
    }

    /// <summary>Enough 256-thread blocks to cover n elements (kernels loop grid-stride past 2^20 blocks).</summary>
    private KernelGrid PerElement(long n)
    {
        Bind();
        long blocks = Math.Min((n + Block - 1) / Block, 1 << 20);
        return new KernelGrid((uint)blocks, 1, 1, Block, 0, Stream);
    }

    /// <summary>An (x, y, z) grid of blocks of the given threads.</summary>
    private KernelGrid Grid(uint x, uint y, uint z, uint threads, uint sharedBytes = 0)
    {
        Bind();
        return new KernelGrid(x, y, z, threads, sharedBytes, Stream);
    }

    /// <summary>Uploads ints (ids, targets) into a cached buffer returned on dispose.</summary>
    private Scratch UploadInts(ReadOnlySpan<int> v)
    {
        var b = new Scratch(this, Rent((long)v.Length * 4));
        UploadTo(b.Ptr, v);
        return b;
    }

    private unsafe void Download<T>(ulong src, Span<T> dst) where T : unmanaged
    {
        if (_capture is not null) throw new InvalidOperationException("reading a tensor back during graph capture (the work has not run)");
        Bind();
        if (dst.Length == 0) return;
        fixed (T* p = dst)
            CuDriver.Check(CuDriver.cuMemcpyDtoH_v2(p, src, (nuint)((long)dst.Length * sizeof(T))), $"cuMemcpyDtoH_v2({(long)dst.Length * sizeof(T)} bytes)");
    }

    // The async copy from pageable memory returns once the data is staged (src may be reused at
    // once) and, unlike cuMemcpyHtoD, does not first wait for the stream to drain: the host keeps
    // queueing work while the device runs.
    private unsafe void UploadTo<T>(ulong dst, ReadOnlySpan<T> src) where T : unmanaged
    {
        Bind();
        if (src.Length == 0) return;
        if (_capture is not null) { CaptureUpload(dst, src); return; }
        fixed (T* p = src)
            CuDriver.Check(CuDriver.cuMemcpyHtoDAsync_v2(dst, p, (nuint)((long)src.Length * sizeof(T)), Stream), $"cuMemcpyHtoDAsync_v2({(long)src.Length * sizeof(T)} bytes)");
    }

    public void Dispose()
    {
        if (_disposed) return;
        if (_capture is not null) throw new InvalidOperationException("disposing a backend during graph capture");
        Bind();
        foreach (var t in _ropeTables.Values) { t.Cos.Dispose(); t.Sin.Dispose(); }
        _ropeTables.Clear();
        lock (_cacheLock)
        {
            foreach (var stack in _cache.Values)
                foreach (var b in stack) b.Dispose();
            _cache.Clear();
            _cachedBytes = 0;
            _disposed = true;
        }
        _blasWorkspace?.Dispose();
        DisposeGemv();
        _blas.Dispose();
        _k.Dispose();
        _ctx.Dispose();
    }
}
