using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Backends;

/// <summary>
/// A backend that can take a checkpoint's tensors straight from its safetensors files (in place,
/// in their stored dtype) instead of from float32/float64 host copies: the CPU backend keeps a
/// bf16 model's 16 GB as the 16 GB memory map instead of 32 GB of float32 arrays.
/// </summary>
public interface IDirectWeights
{
    /// <summary>
    /// The model's parameters read from <paramref name="set"/> (which the caller keeps open for as
    /// long as they live), or null when this backend loads this checkpoint through host copies.
    /// </summary>
    ParamSet<Tensor>? LoadDirect(ModelConfig config, SafetensorsSet set);

    /// <summary>
    /// Whether <paramref name="parameters"/> (from <see cref="LoadDirect"/>) still read the files' memory
    /// map, so the set must stay open while they live; false when every tensor was copied out of it
    /// (the set is then closed at once, and its pages stop counting as this process's).
    /// </summary>
    bool ReadsTheFiles(ParamSet<Tensor> parameters) => true;
}
