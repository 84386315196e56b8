using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// ROME/MEMIT's context templates: "{}" plus short prefixes that the model itself generates from
/// &lt;|endoftext|&gt; with top-k 5 sampling (rome_main.get_context_templates). The reference samples
/// without a seed; we seed it so an edit is reproducible bit for bit.
/// </summary>
public static class ContextTemplates
{
    /// <summary>
    /// ["{}", "&lt;generated text&gt;. {}", ...]: for each [length, count], count prefixes of
    /// length tokens in total (the EOS start token included, as generate_fast's max_out_len counts it).
    /// </summary>
    public static IReadOnlyList<string> Generate(Transformer tf, ITextTokenizer tok, int[][] lengthParams, int seed)
    {
        var result = new List<string> { "{}" };
        int start = tok.EosId ?? throw new ArgumentException("context templates need an end-of-text token to start from");
        var gen = new Generator(tf);
        int n = 0;
        foreach (var lp in lengthParams)
        {
            int length = lp[0], count = lp[1];
            for (int i = 0; i < count; i++, n++)
            {
                var ids = gen.Generate([start], Math.Max(0, length - 1), new Sampling { TopK = 5, Seed = seed * 7919 + n });
                // skip_special_tokens: drop EOS tokens the sampler may produce
                var text = tok.Decode(ids.Where(t => t != start).ToArray());
                result.Add(text.Replace("{", " ").Replace("}", " ") + ". {}");
            }
        }
        return result;
    }

    /// <summary>
    /// MEMIT's templates (memit_main.get_context_templates): [["{}"], [5 texts of length tokens
    /// generated from "The", "Therefore", "Because", "I", "You", one each, + ". {}"]].
    /// </summary>
    public static IReadOnlyList<IReadOnlyList<string>> GenerateMemit(Transformer tf, ITextTokenizer tok, int length, int seed)
    {
        var gen = new Generator(tf);
        var generated = new List<string>();
        int n = 0;
        foreach (var start in new[] { "The", "Therefore", "Because", "I", "You" })
        {
            var prompt = tok.EncodePrompt(start);
            var ids = gen.Generate(prompt, Math.Max(0, length - prompt.Length), new Sampling { TopK = 5, Seed = seed * 7919 + 1000 + n++ });
            // the template's text starts with the start word, not with the BOS the model read before it
            var text = tok.Decode(tok.Encode(start).Concat(ids.Where(t => t != tok.EosId)).ToArray());
            generated.Add(text.Replace("{", " ").Replace("}", " ") + ". {}");
        }
        return [["{}"], generated];
    }
}
