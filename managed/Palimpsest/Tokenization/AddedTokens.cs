using System.Text.RegularExpressions;

namespace Palimpsest.Tokenization;

/// <summary>
/// A tokenizer's added tokens (tokenizer.json's added_tokens: &lt;|begin_of_text|&gt;, &lt;|im_start|&gt;, [INST], ...),
/// found in raw text before any normalisation or pre-tokenisation, as Hugging Face's tokenizers does: at each
/// position the longest added token that starts there wins, and the text between them is encoded by the model.
/// </summary>
internal sealed class AddedTokens
{
    private readonly Regex? _find;

    public AddedTokens(IReadOnlyDictionary<string, int> tokens)
    {
        Ids = tokens;
        // Longest first: .NET's alternation takes the first alternative that matches at the leftmost position.
        if (tokens.Count > 0)
            _find = new Regex(string.Join("|", tokens.Keys.OrderByDescending(k => k.Length).ThenBy(k => k, StringComparer.Ordinal).Select(Regex.Escape)),
                RegexOptions.CultureInvariant);
    }

    public IReadOnlyDictionary<string, int> Ids { get; }

    /// <summary>
    /// Appends the ids of <paramref name="text"/> to <paramref name="ids"/>: each added token's id, and for each piece
    /// between them <paramref name="encode"/>(piece, its offset in the text).
    /// </summary>
    public void Encode(string text, List<int> ids, Action<string, int, List<int>> encode)
    {
        int at = 0;
        if (_find is not null)
            for (var m = _find.Match(text); m.Success; m = m.NextMatch())
            {
                if (m.Index > at) encode(text[at..m.Index], at, ids);
                ids.Add(Ids[m.Value]);
                at = m.Index + m.Length;
            }
        if (at < text.Length) encode(text[at..], at, ids);
    }
}
