using System.Reflection;
using System.Runtime.InteropServices;

namespace Palimpsest.Bench;

/// <summary>
/// cblas_sgemm of the system OpenBLAS (Debian libopenblas0-pthread), the GEMM peer measured in the
/// same process and run as the engine, interleaved shape by shape so that both see the same machine
/// load. Thread count pinned with openblas_set_num_threads.
/// </summary>
internal static unsafe partial class OpenBlas
{
    private const string Lib = "openblas";
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    private static readonly string[] Candidates =
    [
        "libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    ];

    static OpenBlas()
    {
        NativeLibrary.SetDllImportResolver(typeof(OpenBlas).Assembly, (name, asm, path) =>
        {
            if (name != Lib) return IntPtr.Zero;
            foreach (var c in Candidates)
                if (NativeLibrary.TryLoad(c, out var h)) return h;
            throw new DllNotFoundException("OpenBLAS not found (apt-get install -y libopenblas0-pthread); tried " + string.Join(", ", Candidates));
        });
    }

    [LibraryImport(Lib, EntryPoint = "cblas_sgemm")]
    private static partial void CblasSgemm(int order, int transA, int transB, int m, int n, int k,
        float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    [LibraryImport(Lib, EntryPoint = "openblas_set_num_threads")]
    private static partial void SetNumThreads(int n);

    [LibraryImport(Lib, EntryPoint = "openblas_get_config")]
    private static partial IntPtr GetConfig();

    public static void Threads(int n) => SetNumThreads(n);

    public static string Config => Marshal.PtrToStringAnsi(GetConfig()) ?? "?";

    // c [M, N] = a [M, K] · op(b), row-major
    public static void Sgemm(bool transB, int m, int n, int k, float[] a, float[] b, float[] c)
    {
        fixed (float* pa = a, pb = b, pc = c)
            CblasSgemm(RowMajor, NoTrans, transB ? Trans : NoTrans, m, n, k, 1f, pa, k, pb, transB ? k : n, 0f, pc, n);
    }
}
