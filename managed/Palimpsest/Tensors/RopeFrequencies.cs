namespace Palimpsest.Tensors;

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
