using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// Reads the representations editors need at the subject's last token (ROME/MEMIT's
/// "subject_last" fact token): tokens + index, the MLP key, the block output, the MLP output.
/// </summary>
public sealed class FactProbes(ITextTokenizer tok)
{
    /// <summary>Token ids of template.format(subject) and the subject's last-token index.</summary>
    public (int[] Ids, int SubjectLast) Encode(string template, string subject)
    {
        var ids = tok.Encode(template.Replace("{}", subject));
        int idx = SubjectTokens.LastIndex(tok, template, subject);
        if (idx < 0 || idx >= ids.Length)
            throw new ArgumentException($"subject '{subject}' token index {idx} outside the {ids.Length} tokens of \"{template}\"");
        return (ids, idx);
    }

    /// <summary>Key [f] (input of the down-projection) of `layer` at the subject's last token.</summary>
    public double[] KeyAt(Transformer tf, string template, string subject, int layer)
    {
        var (ids, idx) = Encode(template, subject);
        using var r = tf.Forward(ids, new ForwardOptions { CaptureKeysAt = [layer], StopAfterLayer = layer });
        int f = tf.Model.Config.DFf;
        var all = new double[r.MlpKeys[layer].Length];
        tf.Model.Backend.ToHost(r.MlpKeys[layer], all);
        return all.AsSpan(idx * f, f).ToArray();
    }

    /// <summary>Output [d] of block `layer` (the residual stream it leaves) at the subject's last token.</summary>
    public double[] BlockOutputAt(Transformer tf, string template, string subject, int layer)
    {
        var (ids, idx) = Encode(template, subject);
        using var r = tf.Forward(ids, new ForwardOptions { CaptureHidden = true, LogitsFrom = -1 });
        var h = layer == tf.Model.Config.Layers - 1 ? r.FinalResidual! : r.Hidden![layer + 1];
        int d = tf.Model.Config.DModel;
        var all = new double[h.Length];
        tf.Model.Backend.ToHost(h, all);
        return all.AsSpan(idx * d, d).ToArray();
    }

    /// <summary>The MLP output v [d] = k · WDown + b of `layer` for a key k [f] (host, float64).</summary>
    public static double[] MlpOutput(Transformer tf, int layer, double[] key) => MlpOutputs(tf, layer, key, 1);

    /// <summary>MLP outputs [T, d] = keys [T, f] · WDown + b of `layer` (host, float64; WDown is read once).</summary>
    public static double[] MlpOutputs(Transformer tf, int layer, double[] keys, int rows)
    {
        var b = tf.Model.Backend; var bp = tf.Model.Params.Blocks[layer];
        int f = tf.Model.Config.DFf, d = tf.Model.Config.DModel;
        var w = new double[f * d]; b.ToHost(bp.WDown, w);
        var bias = new double[d];
        if (bp.BDown is not null) b.ToHost(bp.BDown, bias);
        var v = new double[rows * d];
        for (int t = 0; t < rows; t++)
        {
            bias.CopyTo(v, t * d);
            for (int i = 0; i < f; i++)
            {
                double k = keys[t * f + i];
                if (k == 0) continue;
                for (int j = 0; j < d; j++) v[t * d + j] += k * w[i * d + j];
            }
        }
        return v;
    }
}
