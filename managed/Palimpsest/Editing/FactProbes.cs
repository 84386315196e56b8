using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// Reads the representations editors need at the fact token (ROME/MEMIT's hparam fact_token:
/// "subject_last" by default, "subject_first", "subject_first_after_last", or "last", the last token
/// of the filled template): tokens + index, the MLP key, the block output, the MLP output.
/// </summary>
public sealed class FactProbes
{
    /// <summary>The fact_token values the reference code accepts (rome/compute_v.py find_fact_lookup_idx).</summary>
    public static readonly string[] FactTokens = ["subject_last", "subject_first", "subject_first_after_last", "last"];

    private readonly ITextTokenizer tok;
    private readonly string _factToken;

    /// <param name="factToken">One of <see cref="FactTokens"/>; anything else throws ArgumentException naming fact_token.</param>
    public FactProbes(ITextTokenizer tok, string factToken = "subject_last")
    {
        if (!FactTokens.Contains(factToken))
            throw new ArgumentException($"fact_token '{factToken}' is not supported ({string.Join(", ", FactTokens)})");
        this.tok = tok;
        _factToken = factToken;
    }

    /// <summary>
    /// Token ids of template.format(subject) and the fact token's index in them: a subject token as
    /// ROME locates it (<see cref="SubjectTokens"/>), or with "last" the last token (the reference's
    /// len(tok(prompt.format(subject))) − 1).
    /// </summary>
    public (int[] Ids, int SubjectLast) Encode(string template, string subject)
    {
        var ids = tok.EncodePrompt(template.Replace("{}", subject));
        int idx = _factToken switch
        {
            "last" => ids.Length - 1,
            "subject_first" => SubjectTokens.Index(tok, template, subject, SubjectToken.First),
            "subject_first_after_last" => SubjectTokens.Index(tok, template, subject, SubjectToken.FirstAfterLast),
            _ => SubjectTokens.LastIndex(tok, template, subject),
        };
        if (idx < 0 || idx >= ids.Length)
            throw new ArgumentException($"subject '{subject}' token index {idx} outside the {ids.Length} tokens of \"{template}\"");
        return (ids, idx);
    }

    /// <summary>
    /// A rewriting prompt of the δ optimisation: template.format(subject) followed by the text of
    /// some target tokens, and the fact token's index in it, which is always inside the prompt part.
    /// With "last" that is the prompt's last token, where the edit writes δ and reads its key; the
    /// reference (find_fact_lookup_idx → −1 on the whole text) puts it on the last target token
    /// instead, where a rank-one edit keyed on the prompt never acts, so for a target of more than
    /// one token its v*/z* was optimised at a position the edit does not reach (MEMIT single edits
    /// on facts-d128-l5: efficacy 0.65 with it).
    /// </summary>
    public (int[] Ids, int SubjectLast) EncodeRewrite(string template, string subject, string targetText)
    {
        if (targetText.Length == 0 || _factToken != "last") return Encode(template + targetText, subject);
        var (promptIds, idx) = Encode(template, subject);
        var ids = tok.EncodePrompt((template + targetText).Replace("{}", subject));
        if (ids.Length < promptIds.Length || !ids.AsSpan(0, promptIds.Length).SequenceEqual(promptIds))
            throw new ArgumentException($"the tokens of \"{template.Replace("{}", subject)}\" are not a prefix of the tokens of that prompt followed by \"{targetText}\"");
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

    /// <summary>
    /// Keys [n][f] of `layer` at the subject's last token of each template: the templates packed
    /// end to end into as few forwards as the context allows (Segments), each stopping after
    /// `layer`; only the n key rows are read back.
    /// </summary>
    public double[][] KeysAt(Transformer tf, IReadOnlyList<string> templates, string subject, int layer)
    {
        var b = tf.Model.Backend; int f = tf.Model.Config.DFf, max = tf.Model.Config.MaxPositions;
        var encoded = templates.Select(t => Encode(t, subject)).ToArray();
        var keys = new double[encoded.Length][];
        for (int start = 0; start < encoded.Length;)
        {
            // one pack: templates [start, end) fitting the context
            int end = start, tokens = 0;
            while (end < encoded.Length && (end == start || tokens + encoded[end].Ids.Length <= max)) tokens += encoded[end++].Ids.Length;
            var ids = encoded[start..end].SelectMany(e => e.Ids).ToArray();
            var segs = encoded[start..end].Select(e => e.Ids.Length).ToArray();
            using var r = tf.Forward(ids, new ForwardOptions { Segments = segs, CaptureKeysAt = [layer], StopAfterLayer = layer });
            using var rows = b.Zeros(end - start, f);
            for (int i = start, at = 0; i < end; at += encoded[i].Ids.Length, i++)
                b.CopyRows(r.MlpKeys[layer], at + encoded[i].SubjectLast, rows, i - start, 1);
            var host = new double[rows.Length];
            b.ToHost(rows, host);
            for (int i = start; i < end; i++) keys[i] = host.AsSpan((i - start) * f, f).ToArray();
            start = end;
        }
        return keys;
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

    /// <summary>
    /// MLP outputs [T, d] = keys [T, f] · WDown + b of `layer`, on the model's backend (in its
    /// precision: float64 on the reference backend), read back as float64.
    /// </summary>
    public static double[] MlpOutputs(Transformer tf, int layer, double[] keys, int rows)
    {
        var b = tf.Model.Backend; var bp = tf.Model.Params.Blocks[layer];
        int f = tf.Model.Config.DFf, d = tf.Model.Config.DModel;
        if (keys.Length != (long)rows * f) throw new ArgumentException($"MlpOutputs: {keys.Length} key values for {rows} rows of {f}");
        using var k = b.FromHost(keys, rows, f);
        using var v = b.Zeros(rows, d);
        b.MatMul(k, false, bp.WDown, false, v);
        if (bp.BDown is not null) b.AddBias(v, bp.BDown);
        var host = new double[rows * d];
        b.ToHost(v, host);
        return host;
    }
}
