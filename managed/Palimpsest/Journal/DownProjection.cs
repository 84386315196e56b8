using Palimpsest.Models;

namespace Palimpsest.Journal;

/// <summary>
/// Where block l's canonical WDown [f, d] lives in a Hugging Face checkpoint. GPT-2's Conv1D stores
/// it as [f, d] (= canonical); nn.Linear checkpoints store [out, in] = [d, f] (transposed). These
/// names mirror <see cref="Architectures"/>, which reads the same tensors; the journal needs them to
/// write the edited matrix back under its original name and layout.
/// </summary>
public sealed record DownProjection(string TensorName, bool Transposed, int KeyDim, int ValueDim)
{
    /// <summary>The stored shape: [f, d], or [d, f] when transposed.</summary>
    public int[] StoredShape => Transposed ? [ValueDim, KeyDim] : [KeyDim, ValueDim];

    /// <summary>Flat index of canonical element (i in [0, f), j in [0, d)) in the stored layout.</summary>
    public long Index(int i, int j) => Transposed ? (long)j * KeyDim + i : (long)i * ValueDim + j;

    /// <param name="hasTransformerPrefix">GPT-2 only: whether the checkpoint names start with "transformer."
    /// (GPT2LMHeadModel) or not (a bare GPT2Model).</param>
    public static DownProjection Of(ModelConfig c, int layer, bool hasTransformerPrefix)
    {
        if (layer < 0 || layer >= c.Layers)
            throw new ArgumentException($"layer {layer} is out of range: the model has {c.Layers} layers (0..{c.Layers - 1})");
        int f = c.DFf, d = c.DModel;
        return c.Arch switch
        {
            Architecture.Gpt2 => new($"{(hasTransformerPrefix ? "transformer." : "")}h.{layer}.mlp.c_proj.weight", false, f, d),
            Architecture.GptJ => new($"transformer.h.{layer}.mlp.fc_out.weight", true, f, d),
            Architecture.GptNeoX => new($"gpt_neox.layers.{layer}.mlp.dense_4h_to_h.weight", true, f, d),
            Architecture.Llama => new($"model.layers.{layer}.mlp.down_proj.weight", true, f, d),
            _ => throw new ModelFormatException($"architecture {c.Arch} has no down-projection name"),
        };
    }
}
