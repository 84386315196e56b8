using Palimpsest.Backends.Cuda;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.GpuBench;

/// <summary>
/// Device time of each op of a T=1 decode step on GPT2-XL shapes (layer 0's weights): each op
/// repeated 200 times inside one CUDA graph, so the number is what the GPU spends per op (kernel
/// plus the gap between dependent nodes), free of host launch cost. With the per-layer counts it
/// says where a decode step's device time goes.
/// </summary>
public static class DecodeOps
{
    private const int Reps = 200;

    /// <summary>(name, times per layer (0: once per step), µs per op).</summary>
    public static List<(string Name, int PerLayer, double Us)> Measure(CudaBackend b, Model model, int cacheRows = 64)
    {
        var c = model.Config;
        var p = model.Params;
        var bp = p.Blocks[0];
        int d = c.DModel, f = c.DFf;
        var owned = new List<Tensor>();
        Tensor Rand(params int[] shape) { var t = b.Zeros(shape); b.FillUniform(t, (ulong)owned.Count + 77, 1f); owned.Add(t); return t; }
        var x = Rand(1, d); var y = Rand(1, d); var up = Rand(1, f); var key = Rand(1, f);
        var logits = Rand(1, c.Vocab);
        var kAll = Rand(cacheRows, d); var vAll = Rand(cacheRows, d); var att = Rand(1, d);
        var mean = Rand(1); var rstd = Rand(1);
        var ops = new List<(string, int, Action)>
        {
            ($"matmul 1x{d} . {d}x{d} (q, k, v, o)", 4, () => b.MatMul(x, false, bp.Wq, false, y)),
            ($"matmul 1x{d} . {d}x{f} (up)", 1, () => b.MatMul(x, false, bp.WUp, false, up)),
            ($"matmul 1x{f} . {f}x{d} (down)", 1, () => b.MatMul(key, false, bp.WDown, false, y)),
            ($"matmul 1x{d} . head^T (logits, {c.Vocab})", 0, () => b.MatMul(x, false, p.Head, true, logits)),
            ($"add_bias 1x{d}", 4, () => b.AddBias(y, bp.Bq!)),
            ($"add_bias 1x{f}", 1, () => b.AddBias(up, bp.BUp!)),
            ($"layernorm 1x{d}", 2, () => b.LayerNorm(x, bp.Ln1G, bp.Ln1B, c.NormEps, y, mean, rstd)),
            ($"attention T=1 S={cacheRows}, {c.Heads} heads", 1, () => b.Attention(x, kAll, vAll, c.Heads, c.KvHeads, c.HeadDim, att, null)),
            ($"gelu 1x{f}", 1, () => b.Activate(c.Act, up, key)),
            ($"add 1x{d}", 2, () => b.Add(x, att, y)),
            ($"copy row 1x{d} (KV cache)", 2, () => b.CopyRows(x, 0, kAll, 5, 1)),
        };
        var result = new List<(string, int, double)>();
        try
        {
            foreach (var (name, perLayer, op) in ops)
            {
                op(); // first use: cached buffers (fp16 products narrow x) and kernel lookups
                using var g = b.Capture(() => { for (int i = 0; i < Reps; i++) op(); });
                double ms = Timing.MedianMs(g.Launch, 5);
                result.Add((name, perLayer, ms * 1000 / Reps));
            }
        }
        finally
        {
            foreach (var t in owned) t.Dispose();
        }
        return result;
    }
}
