using System.Globalization;
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
        ];
    }

    private static string Mib(long bytes) => (bytes / (1024.0 * 1024.0)).ToString("0.0", CultureInfo.InvariantCulture) + " MiB";
}
