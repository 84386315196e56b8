using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// A float32 weight's op(b) [K, N] kept a second time in the order the prepacked GEMM reads it
/// (<see cref="Gemm.SgemmPrepacked"/>): 32-column panels, each [K][32] contiguous and 64-byte
/// aligned, the last padded with zero columns. A prefill then streams every panel front to back
/// instead of packing the weights again on every call (bench/RESULTS.md has what that saves).
/// Made on a weight's second prefill-sized product and made again, into the same memory, after the
/// weight was handed out for writing (<see cref="PackState"/>).
/// </summary>
internal sealed unsafe class PackedWeight
{
    /// <summary>Columns per panel: the width of the AVX-512 micro-kernel's tile.</summary>
    public const int NR = 32;

    private readonly float[] _storage;
    private readonly int _offset;

    public PackedWeight(int k, int n, bool transB)
    {
        K = k; N = n; TransB = transB;
        // Ordinary pages, not HugePages: faulting huge pages in made the kernel compact memory on this
        // machine (the tied head's copy: 255 against 101 ms to make), and prefills read the copies no faster.
        _storage = GC.AllocateUninitializedArray<float>(checked((int)(BytesFor(k, n) / sizeof(float))), pinned: true); // BytesFor counts 16 spare floats: room to start on a cache line
        fixed (float* p = _storage) _offset = (int)(((64 - (long)p % 64) % 64) / sizeof(float));
    }

    public int K { get; }
    public int N { get; }
    /// <summary>Whether the source was stored [N, K] (op(b) = bᵀ).</summary>
    public bool TransB { get; }
    public int Panels => (N + NR - 1) / NR;
    public long PanelFloats => (long)K * NR;
    public long Bytes => BytesFor(K, N);

    /// <summary>The bytes a packed copy of op(b) [k, n] takes.</summary>
    public static long BytesFor(int k, int n) => ((long)k * NR * ((n + NR - 1) / NR) + 16) * sizeof(float);

    /// <summary>Whether this copy can hold op(b) of that source.</summary>
    public bool Fits(int k, int n, bool transB) => k == K && n == N && transB == TransB;

    /// <summary>Panel jp [K][32], from row p0 of op(b). The storage is pinned (allocated on the pinned heap).</summary>
    public float* Panel(int jp, int p0)
    {
        fixed (float* p = _storage) return p + _offset + jp * PanelFloats + (long)p0 * NR;
    }

    /// <summary>Panels [jp0, jp1) from b: [K, N] with row stride ldb, or [N, K] when <see cref="TransB"/>.
    /// Optimized from its first call: each weight is packed once, so tiered compilation would leave
    /// most packing to unoptimized code (the tied head packed at 0.85 GB/s).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public void PackPanels(float* b, int ldb, int jp0, int jp1)
    {
        if (!TransB)
        {
            // b[p, ·]: row by row across the slice's panels, so b is read front to back (panel by
            // panel, each 128-byte read came from another page: GPT2-XL's 6.2 GB packed at ~1 GB/s)
            for (int p = 0; p < K; p++)
            {
                float* src = b + (long)p * ldb;
                for (int jp = jp0; jp < jp1; jp++)
                {
                    int j0 = jp * NR, nr = Math.Min(NR, N - j0);
                    float* d = Panel(jp, p);
                    if (nr == NR && Vector256.IsHardwareAccelerated)
                    {
                        for (int j = 0; j < NR; j += 8) Vector256.Store(Vector256.Load(src + j0 + j), d + j);
                        continue;
                    }
                    int jj = 0;
                    for (; jj < nr; jj++) d[jj] = src[j0 + jj];
                    for (; jj < NR; jj++) d[jj] = 0;
                }
            }
            return;
        }
        for (int jp = jp0; jp < jp1; jp++)
        {
            int j0 = jp * NR, nr = Math.Min(NR, N - j0);
            float* dst = Panel(jp, 0);
            // b[j, p]: the panel's 32 rows of b, eight rows by eight k at a time through a register
            // transpose, the k that do not fill eight (and a last panel's missing rows) one by one.
            int q = 0;
            if (nr == NR && Avx.IsSupported)
                for (; q + 8 <= K; q += 8)
                    for (int r = 0; r < NR; r += 8)
                        GemmPack.Transpose8x8(b + (long)(j0 + r) * ldb + q, ldb, dst + (long)q * NR + r, NR);
            for (int j = 0; j < NR; j++)
            {
                float* src = b + (long)(j0 + j) * ldb;
                if (j < nr) for (int p = q; p < K; p++) dst[(long)p * NR + j] = src[p];
                else for (int p = q; p < K; p++) dst[(long)p * NR + j] = 0;
            }
        }
    }
}

/// <summary>
/// Whether a float32 weight's <see cref="PackedWeight"/> still holds its values. Shared by a tensor
/// and its row-prefix views, since they share storage. Every accessor that may write the storage
/// (<see cref="SimdTensor.Data"/>, <see cref="SimdTensor.Span"/>, and so every backend op that
/// writes) marks it stale first; only the products that read a weight as b and the embedding
/// lookup read it through <see cref="SimdTensor.Storage"/>, which does not.
/// </summary>
internal sealed class PackState
{
    private volatile bool _stale = true;
    private PackBudget? _budget;
    private int _prefills;

    /// <summary>The packed copy (null until the second prefill-sized product over the weight).</summary>
    public PackedWeight? Packed;

    public void MarkStale() => _stale = true;

    /// <summary>
    /// The packed copy of op(b), made or refreshed now if needed; null when <paramref name="budget"/>
    /// has no room for a new one. Locked: sibling backends may prefill over the same weights at once.
    /// </summary>
    public unsafe PackedWeight? Get(float[] b, int ldb, int k, int n, bool transB, PackBudget budget, SimdWorkers workers)
    {
        lock (this)
        {
            if (Packed is { } p && !p.Fits(k, n, transB)) return null; // one packed form per weight: the first asked for
            if (Packed is null)
            {
                // Packed on the second prefill over the weight, not the first: a one-shot prompt
                // never reads it again, and making the copy costs more than packing as one goes
                // (GPT-2 small: a first prefill of 0.96 s against 0.5 s with huge-page copies).
                if (++_prefills < 2) return null;
                if (!budget.TryTake(PackedWeight.BytesFor(k, n))) return null;
                _budget = budget;
                Packed = new PackedWeight(k, n, transB);
                _stale = true;
            }
            if (_stale)
            {
                // cleared before packing: a write that marks it stale meanwhile is not lost
                _stale = false;
                fixed (float* pb = b) Gemm.PackWeight(Packed, pb, ldb, workers);
            }
            return Packed;
        }
    }

    /// <summary>Drops the packed copy and gives its bytes back to the budget (the tensor is disposed).</summary>
    public void Release()
    {
        lock (this)
        {
            if (Packed is { } p) _budget!.Return(p.Bytes);
            Packed = null;
            _budget = null;
        }
    }
}

/// <summary>
/// How many bytes a backend (and its siblings) may spend on packed copies of weights. Packing
/// doubles a float32 model's resident memory, so it stops at a share of physical memory; what is
/// not packed runs the GEMM that packs as it goes.
/// </summary>
internal sealed class PackBudget(long limit)
{
    private long _used;

    public long Limit => limit;
    public long Used => Interlocked.Read(ref _used);

    /// <summary>A quarter of the memory the process may use: GPT-2 small's 0.5 GB of weights fits, an 8B model's does not.</summary>
    public static long Default() => GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4;

    public void Return(long bytes) => Interlocked.Add(ref _used, -bytes);

    public bool TryTake(long bytes)
    {
        // The limit is a share of all memory; what other processes (or this one's weights) already
        // hold is not in it. A copy that would take more than half of what the OS still has
        // available is not made: running the packing GEMM is slower, running out of memory is worse.
        if (AvailableBytes() is long available && bytes > available / 2) return false;
        while (true)
        {
            long used = Interlocked.Read(ref _used);
            if (used + bytes > limit) return false;
            if (Interlocked.CompareExchange(ref _used, used + bytes, used) == used) return true;
        }
    }

    /// <summary>MemAvailable from /proc/meminfo (Linux), else null.</summary>
    private static long? AvailableBytes()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (!line.StartsWith("MemAvailable:", StringComparison.Ordinal)) continue;
                var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                return long.TryParse(parts[1], out long kb) ? kb * 1024 : null;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }
}
