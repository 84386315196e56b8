using Palimpsest.Backends.Cuda;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.GpuBench;

/// <summary>
/// Device time of each op of a forward over T rows on GPT2-XL shapes (layer 0's weights), and
/// optionally of the backward ops a v* step runs: each op repeated 200 times inside one CUDA graph,
/// so the number is what the GPU spends per op (kernel plus the gap between dependent nodes),
/// free of host launch cost. With the per-layer counts it says where a forward's device time goes.
/// T = 1 is a decode step attending over <c>cacheRows</c> cached keys; T > 1 attends causally over
/// its own T rows (a prefill, or the packed prompts of a v* step).
/// </summary>
public static class OpTimes
{
    private const int Reps = 200;

    /// <summary>(name, times per layer (0: once per forward), µs per op).</summary>
    public static List<(string Name, int PerLayer, double Us)> Measure(CudaBackend b, Model model, int T, bool backward = false, int cacheRows = 64)
    {
        var c = model.Config;
        var p = model.Params;
        var bp = p.Blocks[0];
        int d = c.DModel, f = c.DFf, S = T == 1 ? cacheRows : T;
        var owned = new List<Tensor>();
        Tensor Rand(params int[] shape) { var t = b.Zeros(shape); b.FillUniform(t, (ulong)owned.Count + 77, 1f); owned.Add(t); return t; }
        var x = Rand(T, d); var y = Rand(T, d); var up = Rand(T, f); var key = Rand(T, f);
        var logits = Rand(T, c.Vocab);
        var kAll = Rand(S, d); var vAll = Rand(S, d); var att = Rand(T, d);
        var mean = Rand(T); var rstd = Rand(T);
        var y2 = Rand(T, d); var y3 = Rand(T, d); var res = Rand(T, d);
        // what the forward runs per GPT-2 block (IFusedLinear): q, k, v in one call; o and down with
        // bias and residual; up with bias and gelu. The unfused ops after them are for comparison.
        var ops = new List<(string, int, Action)>
        {
            ($"linear3 {T}x{d} . 3 x {d}x{d} + bias (q, k, v)", 1, () => b.Linear3(x, bp.Wq, bp.Bq, y, bp.Wk, bp.Bk, y2, bp.Wv, bp.Bv, y3)),
            ($"linear {T}x{d} . {d}x{d} + bias + residual (o)", 1, () => b.Linear(att, bp.Wo, bp.Bo, y, res)),
            ($"linear+gelu {T}x{d} . {d}x{f} + bias (up)", 1, () => b.LinearAct(c.Act, x, bp.WUp, bp.BUp, up, key)),
            ($"linear {T}x{f} . {f}x{d} + bias + residual (down)", 1, () => b.Linear(key, bp.WDown, bp.BDown, y, res)),
            ($"matmul {T}x{d} . head^T (logits, {c.Vocab})", 0, () => b.MatMul(x, false, p.Head, true, logits)),
            ($"layernorm {T}x{d}", 2, () => b.LayerNorm(x, bp.Ln1G, bp.Ln1B, c.NormEps, y, mean, rstd)),
            ($"attention T={T} S={S}, {c.Heads} heads", 1, () => b.Attention(x, kAll, vAll, c.Heads, c.KvHeads, c.HeadDim, att, null)),
            ($"matmul {T}x{d} . {d}x{d} (not counted)", -1, () => b.MatMul(x, false, bp.Wq, false, y)),
            ($"matmul {T}x{d} . {d}x{f} (not counted)", -1, () => b.MatMul(x, false, bp.WUp, false, up)),
            ($"matmul {T}x{f} . {f}x{d} (not counted)", -1, () => b.MatMul(key, false, bp.WDown, false, y)),
            ($"add_bias {T}x{d} (not counted)", -1, () => b.AddBias(y, bp.Bq!)),
            ($"gelu {T}x{f} (not counted)", -1, () => b.Activate(c.Act, up, key)),
            ($"add {T}x{d} (not counted)", -1, () => b.Add(x, att, y)),
        };
        if (T == 1)
        {
            // cuBLAS for the one-row products (what gemv.cu replaced)
            ops.Add(($"cuBLAS matmul 1x{d} . {d}x{d} (not counted)", -1, NoGemv(() => b.MatMul(x, false, bp.Wq, false, y))));
            ops.Add(($"cuBLAS matmul 1x{d} . {d}x{f} (not counted)", -1, NoGemv(() => b.MatMul(x, false, bp.WUp, false, up))));
            ops.Add(($"cuBLAS matmul 1x{f} . {f}x{d} (not counted)", -1, NoGemv(() => b.MatMul(key, false, bp.WDown, false, y))));
            ops.Add(($"cuBLAS matmul 1x{d} . head^T (not counted)", -1, NoGemv(() => b.MatMul(x, false, p.Head, true, logits))));
            // the weights of layer i % L at the i-th repetition: read from HBM, as in a real step
            // (one layer's weights stay in the 50 MB L2 across 200 repetitions)
            int li = 0;
            BlockParams<Tensor> Next() => p.Blocks[li++ % c.Layers];
            ops.Add(($"linear3 1x{d} (q, k, v), weights of all layers in turn (not counted)", -1, () => { var l = Next(); b.Linear3(x, l.Wq, l.Bq, y, l.Wk, l.Bk, y2, l.Wv, l.Bv, y3); }));
            ops.Add(($"linear+gelu 1x{d} . {d}x{f} (up), weights of all layers in turn (not counted)", -1, () => { var l = Next(); b.LinearAct(c.Act, x, l.WUp, l.BUp, up, key); }));
            ops.Add(($"linear 1x{f} . {f}x{d} (down), weights of all layers in turn (not counted)", -1, () => { var l = Next(); b.Linear(key, l.WDown, l.BDown, y, res); }));
            ops.Add(($"cuBLAS matmul 1x{f} . {f}x{d} (down), weights of all layers in turn (not counted)", -1, NoGemv(() => b.MatMul(key, false, Next().WDown, false, y))));
            // the same products on the weights as stored [in, out] (gemv_xw, split over K) instead of their transposed twins
            ops.Add(($"linear3 1x{d} (q, k, v), all layers in turn, no twins (not counted)", -1, NoTwins(() => { var l = Next(); b.Linear3(x, l.Wq, l.Bq, y, l.Wk, l.Bk, y2, l.Wv, l.Bv, y3); })));
            ops.Add(($"linear+gelu 1x{d} . {d}x{f} (up), all layers in turn, no twins (not counted)", -1, NoTwins(() => { var l = Next(); b.LinearAct(c.Act, x, l.WUp, l.BUp, up, key); })));
            ops.Add(($"linear 1x{f} . {f}x{d} (down), all layers in turn, no twins (not counted)", -1, NoTwins(() => { var l = Next(); b.Linear(key, l.WDown, l.BDown, y, res); })));
            ops.Add(($"linear 1x{d} . {d}x{d} (o), all layers in turn (not counted)", -1, () => { var l = Next(); b.Linear(att, l.Wo, l.Bo, y, res); }));
            // how finely gemv.cu should split K (blocks per SM; the default is 2)
            foreach (int bps in new[] { 1, 4, 8 })
            {
                ops.Add(($"linear 1x{f} . {f}x{d} (down), all layers in turn, no twins, {bps} blocks/SM (not counted)", -1, NoTwins(Split(bps, () => { var l = Next(); b.Linear(key, l.WDown, l.BDown, y, res); }))));
            }
        }
        if (T == 1)
        {
            ops.Add(($"copy row 1x{d} (KV cache)", 2, () => b.CopyRows(x, 0, kAll, 5, 1)));
            ops.Add(($"attention T=1 S={S}, SimpleKernel (not counted)", -1, With(AttentionPath.SimpleKernel, () => b.Attention(x, kAll, vAll, c.Heads, c.KvHeads, c.HeadDim, att, null))));
        }
        else
        {
            // the implementations Auto did not pick, for comparison (kernels/attention.cu, cuBLAS)
            foreach (var path in new[] { AttentionPath.SimpleKernel, AttentionPath.TiledKernel, AttentionPath.Gemm })
                ops.Add(($"attention T={T} S={S}, {path} (not counted)", -1, With(path, () => b.Attention(x, kAll, vAll, c.Heads, c.KvHeads, c.HeadDim, att, null))));
            // the vocabulary padded to a multiple of 64 (50304): is the head's odd row count what
            // keeps the logits product far from the weight-read bound?
            int vPad = (c.Vocab + 63) / 64 * 64;
            var headPad = b.Weight(new float[(long)vPad * d], vPad, d); owned.Add(headPad); // the weights' storage type, zeros
            var logitsPad = Rand(T, vPad);
            ops.Add(($"matmul {T}x{d} . head^T padded to {vPad} rows (not counted)", -1, () => b.MatMul(x, false, headPad, true, logitsPad)));
            ops.Add(($"matmul {T}x{d} . head^T as one product, unsplit (not counted)", -1, () =>
            {
                b.SplitWideN = false;
                try { b.MatMul(x, false, p.Head, true, logits); }
                finally { b.SplitWideN = true; }
            }));
            ops.Add(($"linear3 {T}x{d} (q, k, v) as three products, unbatched (not counted)", -1, () =>
            {
                b.UseBatchedLinear3 = false;
                try { b.Linear3(x, bp.Wq, bp.Bq, y, bp.Wk, bp.Bk, y2, bp.Wv, bp.Bv, y3); }
                finally { b.UseBatchedLinear3 = true; }
            }));
        }
        if (backward)
        {
            // what Transformer.Backward runs per block without weight gradients (q, k, v accumulate
            // into one dAIn, so their products count 3 + o's 1)
            var probs = Rand(c.Heads, T, T); var dAtt = Rand(T, d);
            var dq = Rand(T, d); var dk = Rand(T, d); var dv = Rand(T, d);
            b.Attention(x, kAll, vAll, c.Heads, c.KvHeads, c.HeadDim, att, probs); // valid probs
            ops.Add(($"bwd matmul {T}x{d} . ({d}x{d})^T (q, k, v, o)", 4, () => b.MatMul(y, false, bp.Wq, true, x, accumulate: true)));
            ops.Add(($"bwd matmul {T}x{f} . ({d}x{f})^T (up)", 1, () => b.MatMul(up, false, bp.WUp, true, x)));
            ops.Add(($"bwd matmul {T}x{d} . ({f}x{d})^T (down)", 1, () => b.MatMul(y, false, bp.WDown, true, key)));
            ops.Add(($"bwd layernorm {T}x{d}", 2, () => b.LayerNormBackward(y, x, bp.Ln1G, mean, rstd, att, null, null)));
            ops.Add(($"bwd gelu {T}x{f}", 1, () => b.ActivateBackward(c.Act, up, key, up)));
            ops.Add(($"bwd attention T={T}, {c.Heads} heads", 1, () => b.AttentionBackward(dAtt, x, kAll, vAll, probs, c.Heads, c.KvHeads, c.HeadDim, dq, dk, dv)));
            ops.Add(($"attention T={T} with probs (kept for the backward)", 1, () => b.Attention(x, kAll, vAll, c.Heads, c.KvHeads, c.HeadDim, att, probs)));
            foreach (var path in new[] { AttentionPath.SimpleKernel, AttentionPath.TiledKernel })
                ops.Add(($"attention T={T} with probs, {path} (not counted)", -1, With(path, () => b.Attention(x, kAll, vAll, c.Heads, c.KvHeads, c.HeadDim, att, probs))));
            ops.Add(($"bwd attention T={T}, kernels (not counted)", -1, With(AttentionPath.SimpleKernel,
                () => b.AttentionBackward(dAtt, x, kAll, vAll, probs, c.Heads, c.KvHeads, c.HeadDim, dq, dk, dv))));
            // packed like a v* step: 21 segments of about 14 rows (the segment-aware kernels)
            var lengths = Enumerable.Range(0, 21).Select(i => 12 + i % 5).ToArray();
            lengths[^1] += T - lengths.Sum();
            ops.Add(($"packed attention T={T} (21 segments) with probs", 1, () => b.AttentionSegments(x, kAll, vAll, lengths, c.Heads, c.KvHeads, c.HeadDim, att, probs)));
            ops.Add(($"bwd packed attention T={T} (21 segments)", 1, () => b.AttentionSegmentsBackward(dAtt, x, kAll, vAll, probs, lengths, c.Heads, c.KvHeads, c.HeadDim, dq, dk, dv)));
            ops.Add(($"packed attention T={T} (21 segments) with probs, TiledKernel (not counted)", -1, With(AttentionPath.TiledKernel,
                () => b.AttentionSegments(x, kAll, vAll, lengths, c.Heads, c.KvHeads, c.HeadDim, att, probs))));
            ops.Add(($"bwd packed attention T={T} (21 segments), kernels (not counted)", -1, With(AttentionPath.TiledKernel,
                () => b.AttentionSegmentsBackward(dAtt, x, kAll, vAll, probs, lengths, c.Heads, c.KvHeads, c.HeadDim, dq, dk, dv))));
        }
        Action Split(int blocksPerSm, Action op) => () =>
        {
            b.GemvBlocksPerSm = blocksPerSm;
            try { op(); }
            finally { b.GemvBlocksPerSm = 2; }
        };
        Action NoTwins(Action op) => () =>
        {
            b.TransposedWeightCopies = false;
            try { op(); }
            finally { b.TransposedWeightCopies = true; }
        };
        Action NoGemv(Action op) => () =>
        {
            b.UseGemv = false;
            try { op(); }
            finally { b.UseGemv = true; }
        };
        // an op run with one attention implementation forced (restored after, inside the recording too)
        Action With(AttentionPath path, Action op) => () =>
        {
            b.AttentionPath = path;
            try { op(); }
            finally { b.AttentionPath = AttentionPath.Auto; }
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
