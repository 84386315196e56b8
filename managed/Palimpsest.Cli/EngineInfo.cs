using System.Globalization;
using Palimpsest.Backends.Cpu;
using Palimpsest.Models;

namespace Palimpsest.Cli;

/// <summary>Weight statistics for `info`, read from the safetensors headers only (no tensor data is touched).</summary>
internal static class EngineInfo
{
    public static IEnumerable<(string, string)> Weights(ModelSession s)
    {
        using var set = SafetensorsSet.OpenFolder(s.Folder);
        long count = 0, bytes = 0;
        var dtypes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        int n = 0;
        foreach (var name in set.Names)
        {
            var info = set.Info(name);
            count += info.ElementCount; bytes += info.ByteLength; n++;
            dtypes[info.DType] = dtypes.GetValueOrDefault(info.DType) + 1;
        }
        string files = set.Files.Count == 1 ? "1 file" : $"{set.Files.Count} files";
        return
        [
            ("parameters", count.ToString("N0", CultureInfo.InvariantCulture) + $" in {n} tensors"),
            ("weights", $"{string.Join(", ", dtypes.Select(kv => $"{kv.Key} x{kv.Value}"))}; {Mib(bytes)} in {files}"),
            ("cpu storage", CpuStorage(s.Weights, dtypes.Keys)),
        ];
    }

    /// <summary>What the CPU backend will hold the matrices as under --weights (vectors are always float32).</summary>
    private static string CpuStorage(CpuWeights w, IEnumerable<string> fileDTypes)
    {
        var half = fileDTypes.Where(d => d is "BF16" or "F16").ToList();
        return w switch
        {
            CpuWeights.F32 => "float32 copies of every weight (--weights f32)",
            CpuWeights.BF16 or CpuWeights.F16 when half.SequenceEqual([w == CpuWeights.BF16 ? "BF16" : "F16"]) =>
                $"{half[0]} matrices read in place from the memory map (--weights {(w == CpuWeights.BF16 ? "bf16" : "fp16")}); vectors float32",
            CpuWeights.BF16 => "bf16 matrices, rounded once at load from the file's dtype (--weights bf16); vectors float32",
            CpuWeights.F16 => "fp16 matrices, rounded once at load from the file's dtype (--weights fp16); vectors float32",
            _ when half.Count > 0 => $"{string.Join("/", half)} matrices read in place from the memory map, float32 compute (--weights auto); vectors float32",
            _ => "float32 (--weights auto on a float32/float64 file: as loaded before 16-bit storage)",
        };
    }

    private static string Mib(long bytes) => (bytes / (1024.0 * 1024.0)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB";
}
