using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

public sealed partial class SimdBackend
{
    /// <summary>log Σ_j exp(x_j) of one row; e receives exp(x − max) (scratch of the same length).</summary>
    private static double LogSumExp(ReadOnlySpan<float> x, Span<float> e) => LogSumExp(x, e, out _);

    private static double LogSumExp(ReadOnlySpan<float> x, Span<float> e, out float max)
    {
        max = TensorPrimitives.Max(x);
        TensorPrimitives.Subtract(x, max, e);
        TensorPrimitives.Exp(e, e);
        return max + Math.Log(SumDouble(e));
    }

    /// <summary>Σ x with a float64 total: a 50k-wide vocabulary row summed in float32 would lose digits.</summary>
    private static double SumDouble(ReadOnlySpan<float> x)
    {
        const int block = 256;
        double s = 0;
        for (int o = 0; o < x.Length; o += block) s += TensorPrimitives.Sum(x.Slice(o, Math.Min(block, x.Length - o)));
        return s;
    }

    // lp [R, V] = log_softmax(logits [R, V])
    public void LogSoftmax(Tensor logits, Tensor lp)
    {
        SameLength(logits, lp, "LogSoftmax");
        int V = logits.Cols; var X = F(logits); var Y = F(lp);
        var e = Grow(ref _rowA, V);
        for (int r = 0; r < logits.Rows; r++)
        {
            var x = X.AsSpan(r * V, V);
            float lse = (float)LogSumExp(x, e);
            TensorPrimitives.Subtract(x, lse, Y.AsSpan(r * V, V));
        }
    }

    // mean over rows with targets ≥ 0 of −log softmax(logits [R, V])[target]; dlogits [R, V] += scale · ∂
    public double CrossEntropy(Tensor logits, ReadOnlySpan<int> targets, Tensor? dlogits, double scale = 1.0)
    {
        int V = logits.Cols, R = logits.Rows;
        if (targets.Length != R) throw new ArgumentException($"CrossEntropy: {targets.Length} targets for {R} rows");
        if (dlogits is not null) SameLength(logits, dlogits, "CrossEntropy");
        var X = F(logits); var G = dlogits is null ? null : F(dlogits);
        int count = 0; foreach (var t in targets) if (t >= 0) count++;
        if (count == 0) return 0;
        var e = Grow(ref _rowA, V);
        double loss = 0;
        for (int r = 0; r < R; r++)
        {
            int tgt = targets[r];
            if (tgt < 0) continue;
            if (tgt >= V) throw new ArgumentOutOfRangeException(nameof(targets), $"target id {tgt} is outside the vocabulary [0, {V})");
            var x = X.AsSpan(r * V, V);
            double lse = LogSumExp(x, e, out float max);
            loss += lse - x[tgt];
            if (G is null) continue;
            // dlogits += scale · (softmax − onehot) / count; e holds exp(x − max), softmax = e / Σe
            var g = G.AsSpan(r * V, V);
            double w = scale / count;
            float f = (float)(w * Math.Exp(max - lse));
            TensorPrimitives.MultiplyAdd(e, f, g, g);
            g[tgt] -= (float)w;
        }
        return loss / count;
    }

    // KL(softmax(logits) || exp(refLogProbs)) summed over rows / R; dlogits += scale · ∂
    public double KlDivergence(Tensor logits, Tensor refLogProbs, Tensor? dlogits, double scale = 1.0)
    {
        SameLength(logits, refLogProbs, "KlDivergence");
        if (dlogits is not null) SameLength(logits, dlogits, "KlDivergence");
        int V = logits.Cols, R = logits.Rows;
        var X = F(logits); var LQ = F(refLogProbs); var G = dlogits is null ? null : F(dlogits);
        var p = Grow(ref _rowA, V); var diff = Grow(ref _rowB, V);
        double total = 0;
        for (int r = 0; r < R; r++)
        {
            var x = X.AsSpan(r * V, V);
            float lse = (float)LogSumExp(x, p);
            // diff = log p − log q; p = exp(log p)
            TensorPrimitives.Subtract(x, lse, diff);
            TensorPrimitives.Exp(diff, p);
            TensorPrimitives.Subtract(diff, LQ.AsSpan(r * V, V), diff);
            double kl = 0;
            for (int j = 0; j < V; j++) kl += (double)p[j] * diff[j];
            total += kl;
            if (G is null) continue;
            // d KL / d z_j = p_j (log p_j − log q_j − KL)
            var g = G.AsSpan(r * V, V);
            TensorPrimitives.Subtract(diff, (float)kl, diff);
            TensorPrimitives.Multiply(diff, p, diff);
            TensorPrimitives.MultiplyAdd(diff, (float)(scale / R), g, g);
        }
        return total / R;
    }
}
