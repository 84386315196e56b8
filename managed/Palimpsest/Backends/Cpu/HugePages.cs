using System.Runtime.InteropServices;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// Storage for large float32 weights that Linux may back with 2 MiB pages. Where transparent huge
/// pages are in "madvise" mode (the common default) memory gets them only when asked, and a
/// weight read in 4 KiB pages makes the prefetchers start over at every page: a 1.18 MB stretch
/// read at 22.6 GB/s in 4 KiB pages and 29.3 GB/s in 2 MiB ones on this machine (bench/RESULTS.md).
/// The advice is given before the array is first written, so the pages are huge from their first
/// fault; it is only advice, and anywhere it is refused (another OS, THP off) nothing changes.
/// </summary>
internal static unsafe partial class HugePages
{
    /// <summary>Arrays below this are left alone: they hold no whole 2 MiB page to speak of.</summary>
    private const long MinBytes = 8L << 20;

    private const long Page = 2L << 20;
    private const int MadvHugePage = 14;

    /// <summary>Set once the advice cannot be given (no madvise in this process's C library): it is not tried again.</summary>
    internal static bool Off;

    /// <summary>A float array of n elements, uninitialised when large (the caller writes all of it).</summary>
    public static float[] Floats(long n)
    {
        if (Off || n * sizeof(float) < MinBytes || !OperatingSystem.IsLinux() || n > Array.MaxLength) return new float[n];
        var a = GC.AllocateUninitializedArray<float>((int)n, pinned: true);
        fixed (float* p = a)
        {
            long start = ((long)p + Page - 1) & ~(Page - 1), end = ((long)p + n * sizeof(float)) & ~(Page - 1);
            if (end > start)
            {
                try { _ = madvise((nint)start, (nuint)(end - start), MadvHugePage); }
                catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { Off = true; } // no libc madvise: give no advice again
            }
        }
        return a;
    }

    [LibraryImport("libc")]
    private static partial int madvise(nint addr, nuint length, int advice);
}
