namespace Palimpsest.Backends;

/// <summary>
/// Hugging Face's rope_scaling, where it changes the rotations at every position: "linear" (every
/// frequency divided by Factor) and "llama3" (Llama 3.1/3.2: low frequencies divided by Factor, high
/// ones kept, the band between interpolated, by wavelength against OriginalMaxPositions).
/// </summary>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor = 1, double HighFreqFactor = 4, int OriginalMaxPositions = 8192)
{
    public const string LinearType = "linear", Llama3Type = "llama3";
}

/// <summary>
/// The rotary frequencies of a model: theta and its scaling (null: the default rotation). A bare
/// theta converts to it, so the default reads as it always did (`Rope(..., 10000.0, ...)`).
/// </summary>
public sealed record RopeFrequencies(double Theta, RopeScaling? Scaling = null)
{
    public static implicit operator RopeFrequencies(double theta) => new(theta);

    /// <summary>
    /// inv_freq of pair i (0 ≤ i &lt; rotaryDim/2) in float32, op for op as transformers computes it
    /// (modeling_rope_utils: _compute_default / _linear_scaling / _llama3_parameters; a Python number
    /// divided by a tensor is tensor.reciprocal() * number there, so it is here).
    /// </summary>
    public float InverseFrequency(int i, int rotaryDim) => Scale(1.0f / MathF.Pow((float)Theta, (float)(2 * i) / rotaryDim));

    /// <summary>An unscaled inverse frequency inv [float32] as the scaling makes it (itself when there is none).</summary>
    public float Scale(float inv)
    {
        if (Scaling is not { } s) return inv;
        float factor = (float)s.Factor;
        switch (s.Type)
        {
            case RopeScaling.LinearType:
                return inv / factor;
            case RopeScaling.Llama3Type:
            {
                float lowWavelen = (float)(s.OriginalMaxPositions / s.LowFreqFactor);
                float highWavelen = (float)(s.OriginalMaxPositions / s.HighFreqFactor);
                float wavelen = (1.0f / inv) * (float)(2 * Math.PI);
                if (wavelen > lowWavelen) return inv / factor;   // long wavelengths: interpolated by the factor
                if (wavelen < highWavelen) return inv;           // short ones: as trained
                float smooth = ((1.0f / wavelen) * s.OriginalMaxPositions - (float)s.LowFreqFactor) / (float)(s.HighFreqFactor - s.LowFreqFactor);
                return (1.0f - smooth) * inv / factor + smooth * inv;
            }
            default:
                throw new ArgumentException($"rope scaling '{s.Type}' is not implemented");
        }
    }
}

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
