using System.Diagnostics;
using Palimpsest.Backends.Cuda;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// The PTX committed in kernels/ptx (and embedded in Palimpsest.dll) must be what clang-14 makes
/// of kernels/*.cu today, so that nobody edits a kernel and ships its old PTX. Runs where
/// /usr/bin/clang-14 exists (no GPU needed); skips with the reason elsewhere.
/// </summary>
public class KernelPtxFreshnessTests
{
    private const string Clang = "/usr/bin/clang-14";

    public static TheoryData<string> Kernels() => new(KernelModules.Names);

    [Theory, MemberData(nameof(Kernels))]
    public void Committed_ptx_matches_a_fresh_clang14_compile(string name)
    {
        if (!File.Exists(Clang)) Assert.Skip($"{Clang} not found: cannot recompile kernels/{name}.cu");
        var kernels = Path.Combine(Paths.RepoRoot, "kernels");
        var output = Path.Combine(Path.GetTempPath(), $"palimpsest-{name}-{Guid.NewGuid():N}.ptx");
        try
        {
            // The flags of kernels/compile-ptx.sh.
            var psi = new ProcessStartInfo(Clang)
            {
                WorkingDirectory = kernels,
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            foreach (var a in new[] { "-x", "cuda", "--cuda-gpu-arch=sm_80", "--cuda-device-only", "-nocudainc", "-nocudalib", "-O3",
                         "-include", "clang_cuda_min.h", "-S", $"{name}.cu", "-o", output })
                psi.ArgumentList.Add(a);
            using var proc = Process.Start(psi)!;
            string err = proc.StandardError.ReadToEnd();
            proc.WaitForExit();
            Assert.True(proc.ExitCode == 0, $"clang-14 failed on kernels/{name}.cu:\n{err}");
            var fresh = File.ReadAllText(output);
            var committed = File.ReadAllText(Path.Combine(kernels, "ptx", $"{name}.ptx"));
            Assert.True(fresh == committed, $"kernels/ptx/{name}.ptx is stale: run kernels/compile-ptx.sh and commit the result");
            var embedded = System.Text.Encoding.UTF8.GetString(KernelModules.Ptx(name));
            Assert.True(embedded == committed, $"the PTX embedded in Palimpsest.dll differs from kernels/ptx/{name}.ptx: rebuild");
        }
        finally
        {
            File.Delete(output);
        }
    }
}
