using Palimpsest.Runtime;

namespace Palimpsest.Editing;

/// <summary>
/// A change to one block's MLP down-projection WDown [f, d] (canonical [in, out] layout) in low-rank
/// form: ΔW = Σ_r Left[r] ⊗ Right[r], Left [rank, f] (key space), Right [rank, d] (value space),
/// both row-major float64. ROME gives rank 1; MEMIT/AlphaEdit give rank ≤ batch size. Compact to
/// store in the journal and exact to revert.
/// </summary>
public sealed record WeightDelta(int Layer, int Rank, double[] Left, double[] Right)
{
    public int KeyDim => Left.Length / Math.Max(1, Rank);
    public int ValueDim => Right.Length / Math.Max(1, Rank);

    /// <summary>Dense ΔW [f, d] row-major.</summary>
    public double[] ToDense()
    {
        int f = KeyDim, d = ValueDim;
        var w = new double[(long)f * d];
        for (int r = 0; r < Rank; r++)
            for (int i = 0; i < f; i++)
            {
                double a = Left[r * f + i];
                if (a == 0) continue;
                for (int j = 0; j < d; j++) w[(long)i * d + j] += a * Right[r * d + j];
            }
        return w;
    }

    /// <summary>||ΔW||_F computed from the factors (no dense matrix).</summary>
    public double FrobeniusNorm()
    {
        int f = KeyDim, d = ValueDim;
        double s = 0;
        for (int a = 0; a < Rank; a++)
            for (int b = 0; b < Rank; b++)
            {
                double l = 0, r = 0;
                for (int i = 0; i < f; i++) l += Left[a * f + i] * Left[b * f + i];
                for (int j = 0; j < d; j++) r += Right[a * d + j] * Right[b * d + j];
                s += l * r;
            }
        return Math.Sqrt(Math.Max(0, s));
    }
}

/// <summary>A <see cref="WeightDelta"/> applied to a model in memory (the edited-model folder's journal makes an edit durable).</summary>
public static class ModelDeltas
{
    /// <summary>
    /// WDown of the delta's layer += sign · ΔW, in float64 on the host and uploaded back. Returns the
    /// previous WDown [f, d] so callers can restore it exactly (<see cref="Model.SetDownProjection"/>).
    /// </summary>
    public static double[] ApplyDelta(this Model model, WeightDelta delta, double sign = 1.0)
    {
        var c = model.Config;
        if (delta.KeyDim != c.DFf || delta.ValueDim != c.DModel)
            throw new ArgumentException($"delta is [{delta.KeyDim}, {delta.ValueDim}], layer {delta.Layer}'s WDown is [{c.DFf}, {c.DModel}]");
        var old = model.DownProjection(delta.Layer);
        var dense = delta.ToDense();
        var updated = new double[old.Length];
        for (long i = 0; i < updated.Length; i++) updated[i] = old[i] + sign * dense[i];
        model.SetDownProjection(delta.Layer, updated);
        return old;
    }
}
