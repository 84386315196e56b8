using Palimpsest.Models;

namespace Palimpsest.Cli.Parity;

/// <summary>
/// What one side of the parity computed, under the names both sides use (run_official.py writes the
/// same ones): ROME, per request i: r{i}.u [f], r{i}.right [d] (ΔW = u ⊗ right), r{i}.kbar [f],
/// r{i}.kp [f], r{i}.vstar [d]; MEMIT: z [n, d], and per edited layer l: l{l}.adj [f, n],
/// l{l}.resid [d, n] (ΔW = adj · residᵀ), l{l}.keys [n, f]. Plus the target's probability after the
/// rewriting prompt before and after the edit (TargetScorer's per-token geometric mean).
/// </summary>
internal sealed class ParityTensors
{
    public Dictionary<string, (int[] Shape, double[] Data)> Tensors { get; } = new();
    public double[] ProbBefore { get; set; } = [];
    public double[] ProbAfter { get; set; } = [];

    public void Add(string name, double[] data, params int[] shape) => Tensors[name] = (shape.Length == 0 ? [data.Length] : shape, data);

    public double[] this[string name] => Tensors.TryGetValue(name, out var t) ? t.Data
        : throw new CliUsageException($"parity: the results have no tensor {name}");

    public void Save(string path) => SafetensorsWriter.Write(path, Tensors.Select(kv =>
        (kv.Key, "F64", kv.Value.Shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(kv.Value.Data.AsSpan()).ToArray())).ToList());

    public static ParityTensors Load(string path, double[] before, double[] after)
    {
        var t = new ParityTensors { ProbBefore = before, ProbAfter = after };
        using var f = SafetensorsFile.Open(path);
        foreach (var (name, info) in f.Tensors) t.Tensors[name] = (info.Shape, f.ReadF64(name));
        return t;
    }

    /// <summary>[r, c] row-major → [c, r] row-major.</summary>
    public static double[] Transpose(double[] a, int rows, int cols)
    {
        var t = new double[a.Length];
        for (int i = 0; i < rows; i++)
            for (int j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
        return t;
    }
}
