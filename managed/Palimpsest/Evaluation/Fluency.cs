using System.Text.RegularExpressions;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Evaluation;

/// <summary>
/// Generation entropy (ROME's "fluency", eval_utils_counterfact.py n_gram_entropy): text is
/// generated from each prompt with top-k 5 sampling up to 100 tokens in all (prompt included, as
/// generate_fast's max_out_len), and scored by the weighted entropy of its word bi- and tri-grams.
/// Low values mean repetitive text (a damaged model).
/// </summary>
public static partial class Fluency
{
    /// <summary>
    /// ROME's compute_n_gram_entropy: for n in (2, 3) the entropy (bits) of the n-gram frequency
    /// distribution, weighted 2/3 and 4/3, then the arithmetic mean. Words as nltk.word_tokenize
    /// approximately splits them (runs of word characters with inner ' or -, and single punctuation
    /// marks); nltk's contraction splitting ("do" + "n't") is not reproduced.
    /// </summary>
    public static double NGramEntropy(string text)
    {
        var words = Words().Matches(text).Select(m => m.Value).ToArray();
        double[] weights = [2.0 / 3.0, 4.0 / 3.0];
        double sum = 0;
        for (int k = 0; k < 2; k++)
        {
            int n = k + 2;
            var counts = new Dictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i + n <= words.Length; i++)
            {
                string g = string.Join('\u0001', words, i, n);
                counts[g] = counts.GetValueOrDefault(g) + 1;
            }
            double total = counts.Values.Sum(), h = 0;
            foreach (int c in counts.Values) { double p = c / total; h -= p * Math.Log2(p); }
            // numpy sums an empty array to 0; so does this.
            sum += weights[k] * h;
        }
        return sum / 2;
    }

    /// <summary>Mean n-gram entropy of the texts generated from <paramref name="prompts"/> (the texts include their prompts, as ROME's).</summary>
    public static double GenerationEntropy(Transformer model, ITextTokenizer tok, IReadOnlyList<string> prompts,
        int maxLength = 100, int seed = 0, int topK = 5)
        => prompts.Count == 0 ? double.NaN
            : Generate(model, tok, prompts, maxLength, seed, topK).Average(NGramEntropy);

    /// <summary>Texts (prompt + continuation) of at most maxLength tokens, capped at the model's context; prompt i uses seed + i.</summary>
    public static IReadOnlyList<string> Generate(Transformer model, ITextTokenizer tok, IReadOnlyList<string> prompts,
        int maxLength = 100, int seed = 0, int topK = 5)
    {
        var gen = new Generator(model);
        int cap = Math.Min(maxLength, model.Model.Config.MaxPositions);
        var texts = new List<string>(prompts.Count);
        for (int i = 0; i < prompts.Count; i++)
        {
            var ids = tok.EncodePrompt(prompts[i]);
            int room = Math.Max(0, cap - ids.Length);
            var outIds = gen.Generate(ids, room, new Sampling { TopK = topK, Seed = seed + i });
            // the text is the prompt's and the generated tokens', without the BOS the model read first
            texts.Add(tok.Decode([.. tok.Encode(prompts[i]), .. outIds]).Replace("\n\n", " ").Replace("<|endoftext|>", ""));
        }
        return texts;
    }

    [GeneratedRegex(@"\w+(?:['\-]\w+)*|[^\w\s]", RegexOptions.CultureInvariant)]
    private static partial Regex Words();
}
