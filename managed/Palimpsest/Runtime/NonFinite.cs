using Palimpsest.Models;

namespace Palimpsest.Runtime;

/// <summary>
/// A checkpoint with a NaN or ±∞ in a weight gives NaN logits, which greedy decoding and sampling
/// turn into some token without a word. Callers that read logits to the host check them (one pass
/// over a row they already hold); when one is not finite, a forward with every hidden state names
/// the first place the values stop being finite.
/// </summary>
public static class NonFinite
{
    /// <summary>Throws <see cref="ModelFormatException"/> naming where the output stops being finite when logits hold a NaN or ±∞; ids: the whole sequence those logits came from.</summary>
    public static void Check(Transformer tf, ReadOnlySpan<double> logits, Func<int[]> ids)
    {
        foreach (double x in logits)
            if (!double.IsFinite(x)) throw new ModelFormatException(Diagnose(tf, ids()));
    }

    /// <summary>"the output is not finite (NaN or ±∞) from block 3 on ..." for the sequence ids.</summary>
    public static string Diagnose(Transformer tf, int[] ids)
    {
        var b = tf.Model.Backend;
        int L = tf.Model.Config.Layers;
        using var r = tf.Forward(ids, new ForwardOptions { CaptureHidden = true });
        bool Finite(Tensors.Tensor t)
        {
            var v = new double[t.Length];
            b.ToHost(t, v);
            return v.All(double.IsFinite);
        }
        string where = "the head (lm_head)";
        if (!Finite(r.Hidden![0])) where = "the embeddings (wte / wpe)";
        else
        {
            for (int l = 1; l < L; l++)
                if (!Finite(r.Hidden[l])) { where = $"block {l - 1}"; break; }
            if (where.StartsWith("the head", StringComparison.Ordinal))
            {
                if (!Finite(r.FinalResidual!)) where = $"block {L - 1}";
                else if (!Finite(r.Hidden[L])) where = "the final norm";
            }
        }
        return $"the model's output is not finite (NaN or ±∞) from {where} on: a weight there is NaN or ±∞, or too large for float32 "
            + "(palimpsest info MODEL --check names the tensors)";
    }
}
