using Palimpsest.Tensors;
namespace Palimpsest.Backends.Cuda;

// Launchers for kernels/losses.cu. Per-row losses come back to the host and are summed in float64.
public sealed partial class CudaBackend
{
    // logits [R, V] -> lp [R, V]
    public void LogSoftmax(Tensor logits, Tensor lp)
    {
        SameLength(logits, lp, "LogSoftmax");
        _k.Losses.log_softmax(PerRow(logits.Rows), F(logits, "logits").Ptr, F(lp, "lp").Ptr, logits.Cols);
    }

    // logits [R, V], targets [R] -> mean NLL over rows with target >= 0; dlogits [R, V] += scale * gradient
    public double CrossEntropy(Tensor logits, ReadOnlySpan<int> targets, Tensor? dlogits, double scale = 1.0)
    {
        var cl = F(logits, "logits");
        int R = cl.Rows, V = cl.Cols;
        if (targets.Length != R) throw new ArgumentException($"CrossEntropy: {targets.Length} targets for logits {cl}");
        if (dlogits is not null) SameLength(cl, dlogits, "CrossEntropy dlogits");
        int n = 0;
        foreach (var t in targets)
        {
            if (t >= V) throw new ArgumentOutOfRangeException(nameof(targets), $"CrossEntropy: target {t} outside [0, {V})");
            if (t >= 0) n++;
        }
        if (n == 0) return 0.0;
        using var dTargets = UploadInts(targets);
        using var nll = New(DType.F32, [R]);
        _k.Losses.cross_entropy(PerRow(R), cl.Ptr, dTargets.Ptr, nll.Ptr, Opt(dlogits, "dlogits"), V, (float)(scale / n));
        return SumOnHost(nll) / n;
    }

    // KL(softmax(logits) || exp(refLogProbs)) summed over rows / R; dlogits += scale * gradient
    public double KlDivergence(Tensor logits, Tensor refLogProbs, Tensor? dlogits, double scale = 1.0)
    {
        var cl = F(logits, "logits");
        SameLength(cl, refLogProbs, "KlDivergence refLogProbs");
        if (dlogits is not null) SameLength(cl, dlogits, "KlDivergence dlogits");
        int R = cl.Rows;
        if (R == 0) return 0.0;
        using var kl = New(DType.F32, [R]);
        _k.Losses.kl_div(PerRow(R), cl.Ptr, F(refLogProbs, "refLogProbs").Ptr, kl.Ptr, Opt(dlogits, "dlogits"), cl.Cols, (float)(scale / R));
        return SumOnHost(kl) / R;
    }

    private double SumOnHost(CudaTensor t)
    {
        var h = new float[t.Length];
        Download(t.Ptr, h.AsSpan());
        double s = 0;
        foreach (var x in h) s += x;
        return s;
    }
}
