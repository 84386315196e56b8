using Palimpsest.Editing;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tokenization;

namespace Palimpsest.Analysis;

/// <summary>Which state a causal trace restores.</summary>
public enum TraceKind { Hidden, Mlp, Attn }

/// <summary>
/// One causal trace: Scores[t, l] = p(answer) at the last token when the state of `Kind` at
/// (token t, layer l) — a window of layers for Mlp/Attn — is restored from the clean run into the
/// run whose subject embeddings were corrupted. High = clean p(answer); Low = corrupted, unrestored.
/// </summary>
public sealed record TraceResult(
    string Prompt, string Subject, string Answer, int AnswerId, string[] Tokens, int SubjectFirst, int SubjectLast,
    TraceKind Kind, double HighScore, double LowScore, double[,] Scores);

/// <summary>
/// ROME's causal tracing (Meng et al. 2022, experiments/causal_trace.py): Gaussian noise of
/// noiseStd on the subject's token embeddings (several samples), restore one clean state, measure
/// how much of p(answer) comes back. Restoration overwrites the state (it does not add), so
/// restoring a window of layers is exact.
/// </summary>
public sealed class CausalTracer
{
    private readonly Transformer _tf;
    private readonly ITextTokenizer _tok;

    public CausalTracer(Transformer tf, ITextTokenizer tok, double noiseStd, int samples = 10, int window = 10, int seed = 1)
    {
        if (samples < 1) throw new ArgumentOutOfRangeException(nameof(samples), "samples must be >= 1");
        _tf = tf; _tok = tok; NoiseStd = noiseStd; Samples = samples; Window = window; Seed = seed;
    }

    public double NoiseStd { get; }
    public int Samples { get; }
    public int Window { get; }
    public int Seed { get; }

    /// <summary>Standard deviation of the token embeddings of the subjects' tokens (ROME's collect_embedding_std).</summary>
    public static double EmbeddingStd(Model model, ITextTokenizer tok, IEnumerable<string> subjects)
    {
        int d = model.Config.DModel;
        var wte = new float[model.Params.Wte.Length];
        model.Backend.ToHost(model.Params.Wte, wte);
        double sum = 0, sq = 0; long n = 0;
        foreach (var s in subjects)
            foreach (var id in tok.Encode(s))
                for (int j = 0; j < d; j++) { double v = wte[(long)id * d + j]; sum += v; sq += v * v; n++; }
        if (n < 2) throw new ArgumentException("no subject tokens to measure the embedding spread");
        double mean = sum / n;
        return Math.Sqrt(Math.Max(0, (sq - n * mean * mean) / (n - 1)));
    }

    /// <summary>Traces prompt (subject filled in). answer = null: the clean greedy prediction.</summary>
    public TraceResult Trace(string prompt, string subject, TraceKind kind, string? answer = null)
    {
        var b = _tf.Model.Backend; var c = _tf.Model.Config;
        int L = c.Layers, d = c.DModel, f = c.DFf;
        int at = prompt.IndexOf(subject, StringComparison.Ordinal);
        if (at < 0) throw new ArgumentException($"subject '{subject}' does not occur in the prompt \"{prompt}\"");
        string template = prompt[..at] + "{}" + prompt[(at + subject.Length)..];
        var ids = _tok.EncodePrompt(prompt);
        int first = SubjectTokens.FirstIndex(_tok, template, subject), last = SubjectTokens.LastIndex(_tok, template, subject);
        if (last >= ids.Length) throw new ArgumentException($"subject tokens [{first}, {last}] outside the {ids.Length} prompt tokens");
        int T = ids.Length;

        // clean run: block outputs, MLP outputs, attention outputs at every (layer, token)
        var cleanOut = new double[L][]; var cleanMlp = new double[L][]; var cleanAttn = new double[L][];
        double high; int answerId;
        using (var r = _tf.Forward(ids, new ForwardOptions { CaptureHidden = true, CaptureKeysAt = Enumerable.Range(0, L).ToArray(), LogitsFrom = -1 }))
        {
            var probs = Softmax(Host(b, r.Logits));
            answerId = answer is null ? Generator.ArgMax(probs) : _tok.Encode(answer.StartsWith(' ') ? answer : " " + answer)[0];
            high = probs[answerId];
            var hidden = new double[L + 1][];
            for (int l = 0; l < L; l++) hidden[l] = Host(b, r.Hidden![l]);
            hidden[L] = Host(b, r.FinalResidual!);
            for (int l = 0; l < L; l++)
            {
                cleanOut[l] = hidden[l + 1];
                var mlp = FactProbes.MlpOutputs(_tf, l, Host(b, r.MlpKeys[l]), T);
                cleanMlp[l] = mlp;
                // every block's output is its input + attention output + MLP output
                var attn = new double[T * d];
                for (int k = 0; k < T * d; k++) attn[k] = hidden[l + 1][k] - hidden[l][k] - mlp[k];
                cleanAttn[l] = attn;
            }
        }

        // seeded noise, one draw per sample, reused by every restoration (as the reference's RandomState(1))
        var rng = new Random(Seed);
        var noise = new List<Tensor>();
        var noiseIv = new List<Intervention>[Samples];
        for (int s = 0; s < Samples; s++)
        {
            noiseIv[s] = [];
            for (int t = first; t <= last; t++)
            {
                var v = new double[d];
                for (int j = 0; j < d; j++) v[j] = NoiseStd * Gaussian(rng);
                var tv = b.FromHost(v, d); noise.Add(tv);
                noiseIv[s].Add(new Intervention(0, InterventionSite.ResidualIn, t, tv));
            }
        }
        var restored = new Dictionary<(int, int), Tensor>();
        try
        {
            Tensor Clean(int l, int t)
            {
                if (restored.TryGetValue((l, t), out var x)) return x;
                var src = (kind switch { TraceKind.Hidden => cleanOut, TraceKind.Mlp => cleanMlp, _ => cleanAttn })[l];
                return restored[(l, t)] = b.FromHost(src.AsSpan(t * d, d), d);
            }
            var site = kind switch { TraceKind.Hidden => InterventionSite.BlockOutput, TraceKind.Mlp => InterventionSite.MlpOutput, _ => InterventionSite.AttnOutput };
            double P(IReadOnlyList<Intervention> extra)
            {
                double sum = 0;
                for (int s = 0; s < Samples; s++)
                {
                    using var r = _tf.Forward(ids, new ForwardOptions { LogitsFrom = -1, Interventions = [.. noiseIv[s], .. extra] });
                    sum += Softmax(Host(b, r.Logits))[answerId];
                }
                return sum / Samples;
            }
            double low = P([]);
            var scores = new double[T, L];
            for (int t = 0; t < T; t++)
                for (int l = 0; l < L; l++)
                {
                    int lo = kind == TraceKind.Hidden ? l : Math.Max(0, l - Window / 2);
                    int hi = kind == TraceKind.Hidden ? l : Math.Min(L - 1, l + (Window + 1) / 2 - 1);
                    var extra = new List<Intervention>();
                    for (int j = lo; j <= hi; j++) extra.Add(new Intervention(j, site, t, Clean(j, t), Replace: true));
                    scores[t, l] = P(extra);
                }
            var tokens = ids.Select(i => _tok.Decode([i])).ToArray();
            return new TraceResult(prompt, subject, _tok.Decode([answerId]), answerId, tokens, first, last, kind, high, low, scores);
        }
        finally
        {
            foreach (var t in noise) t.Dispose();
            foreach (var t in restored.Values) t.Dispose();
        }
    }

    /// <summary>
    /// Average indirect effect (score − low) over many traces, by ROME's token categories:
    /// first subject token, middle subject tokens, last subject token, first subsequent token,
    /// further tokens, last token. Returns [6, L] and the category names.
    /// </summary>
    public static (double[,] Effect, string[] Rows) Average(IReadOnlyList<TraceResult> traces)
    {
        string[] rows = ["first subject token", "middle subject tokens", "last subject token", "first subsequent token", "further tokens", "last token"];
        if (traces.Count == 0) throw new ArgumentException("no traces to average");
        int L = traces[0].Scores.GetLength(1);
        var sum = new double[6, L]; var count = new int[6];
        foreach (var tr in traces)
        {
            int T = tr.Tokens.Length;
            var acc = new double[6, L]; var n = new int[6];
            for (int t = 0; t < T; t++)
            {
                int cat = t == T - 1 ? 5 : t == tr.SubjectFirst ? 0 : t < tr.SubjectLast && t > tr.SubjectFirst ? 1 : t == tr.SubjectLast ? 2
                    : t == tr.SubjectLast + 1 ? 3 : t > tr.SubjectLast ? 4 : -1;
                if (cat < 0) continue; // tokens before the subject
                n[cat]++;
                for (int l = 0; l < L; l++) acc[cat, l] += tr.Scores[t, l] - tr.LowScore;
            }
            for (int k = 0; k < 6; k++)
                if (n[k] > 0) { count[k]++; for (int l = 0; l < L; l++) sum[k, l] += acc[k, l] / n[k]; }
        }
        for (int k = 0; k < 6; k++) for (int l = 0; l < L; l++) sum[k, l] = count[k] > 0 ? sum[k, l] / count[k] : double.NaN;
        return (sum, rows);
    }

    private static double[] Host(Palimpsest.Backends.IBackend b, Tensor t) { var h = new double[t.Length]; b.ToHost(t, h); return h; }

    private static double[] Softmax(double[] z)
    {
        double m = z.Max(), s = 0;
        var p = new double[z.Length];
        for (int i = 0; i < z.Length; i++) { p[i] = Math.Exp(z[i] - m); s += p[i]; }
        for (int i = 0; i < z.Length; i++) p[i] /= s;
        return p;
    }

    private static double Gaussian(Random r)
    {
        double u1 = 1.0 - r.NextDouble(), u2 = r.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
