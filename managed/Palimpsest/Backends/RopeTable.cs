using Palimpsest.Tensors;

namespace Palimpsest.Backends;

/// <summary>
/// Rotary angles computed exactly the way Hugging Face transformers computes them: inv_freq and
/// the angle pos·inv_freq in float32 (transformers builds them in float32 even when the model
/// runs in float64, and casts cos/sin afterwards). Every backend uses this table so that the
/// float64 reference matches transformers' float64 outputs to ~1e-12 rather than ~1e-7.
/// </summary>
public static class RopeTable
{
    /// <summary>cos and sin of rotation pair i (0 ≤ i &lt; rotaryDim/2) at absolute position pos.</summary>
    public static (double Cos, double Sin) At(int pos, int i, int rotaryDim, RopeFrequencies rope)
    {
        float angle = pos * rope.InverseFrequency(i, rotaryDim);
        // cos/sin of the float32 angle, rounded to float32 as torch does for a float32 tensor.
        return ((float)Math.Cos(angle), (float)Math.Sin(angle));
    }

    /// <summary>cos [P, rotaryDim/2] and sin [P, rotaryDim/2] for positions 0..P-1.</summary>
    public static (float[] Cos, float[] Sin) Build(int positions, int rotaryDim, RopeFrequencies rope)
    {
        int half = rotaryDim / 2;
        var inv = new float[half];
        for (int i = 0; i < half; i++) inv[i] = rope.InverseFrequency(i, rotaryDim);
        var c = new float[positions * half];
        var s = new float[positions * half];
        for (int p = 0; p < positions; p++)
            for (int i = 0; i < half; i++)
            {
                float angle = p * inv[i];
                c[p * half + i] = (float)Math.Cos(angle);
                s[p * half + i] = (float)Math.Sin(angle);
            }
        return (c, s);
    }
}
