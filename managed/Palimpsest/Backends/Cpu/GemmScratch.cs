namespace Palimpsest.Backends.Cpu;

/// <summary>
/// Per-thread packing buffers and loop jobs for <see cref="Gemm"/>. The buffers live on the pinned
/// object heap so a raw pointer into them stays valid, start on a 64-byte boundary so packed panels
/// never split a cache line, and only grow: after the first call of a given size there is no
/// allocation. Thread-static because GEMM runs on the caller and on helper threads at once and each
/// needs its own A block; nothing observable is shared.
/// </summary>
internal sealed unsafe class GemmScratch
{
    [ThreadStatic] private static GemmScratch? t_current;

    private bool _inUse;

    /// <summary>The scratch a thread packs its A blocks into (only inside a task, which never nests).</summary>
    public static GemmScratch ForThisThread => t_current ??= new GemmScratch();

    /// <summary>
    /// The calling thread's scratch for one GEMM call (B panel, jobs), or a fresh one should this
    /// thread already be inside a GEMM (a GEMM started from inside another's task).
    /// </summary>
    public static GemmScratch Acquire()
    {
        var s = ForThisThread;
        if (s._inUse) s = new GemmScratch();
        s._inUse = true;
        return s;
    }

    public static void Release(GemmScratch s) => s._inUse = false;

    public Gemm.BlockJob BlockJob { get; } = new();
    public Gemm.GemvJob GemvJob { get; } = new();
    public Gemm.GemvHalfJob GemvHalfJob { get; } = new();
    public Gemm.ShortMJob ShortMJob { get; } = new();
    public Gemm.PrepackedJob PrepackedJob { get; } = new();

    private readonly Buffer _packA = new(), _packB = new(), _vector = new(), _partials = new(), _groupB = new(), _tile = new(), _tile8x32 = new();

    /// <summary>Room for the KC x 64 block of B one short-M task packs (only inside a task, which never nests).</summary>
    public float* GroupB(long floats) => _groupB.Get(floats);

    /// <summary>Room for one MR x NR edge tile.</summary>
    public float* Tile() => _tile.Get(Gemm.MR * Gemm.NR);

    /// <summary>An edge tile of the AVX-512 kernel, [8, 32].</summary>
    public float* Tile8x32() => _tile8x32.Get(Gemm.MR8 * PackedWeight.NR);

    /// <summary>Room for the partial rows of c that a GEMV split over k sums into.</summary>
    public float* Partials(long floats) => _partials.Get(floats);

    /// <summary>Room for a packed A block (MC x KC floats).</summary>
    public float* PackA(long floats) => _packA.Get(floats);

    /// <summary>Room for a packed B panel (KC x NC floats), read by every thread of one call.</summary>
    public float* PackB(long floats) => _packB.Get(floats);

    /// <summary>Room for a gathered vector (GEMV with a strided operand).</summary>
    public float* Vector(long floats) => _vector.Get(floats);

    private sealed class Buffer
    {
        private float[]? _array;
        private float* _aligned;
        private long _capacity;

        public float* Get(long floats)
        {
            if (floats > _capacity)
            {
                long cap = Math.Max(floats, _capacity * 2);
                // 16 spare floats = 64 bytes so the start can be moved to a cache-line boundary.
                _array = GC.AllocateUninitializedArray<float>(checked((int)(cap + 16)), pinned: true);
                fixed (float* p = _array)
                {
                    long addr = (long)p;
                    _aligned = (float*)((addr + 63) & ~63L);
                }
                _capacity = cap;
            }
            return _aligned;
        }
    }
}
