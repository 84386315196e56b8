using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>
/// Where the subject sits in a tokenised prompt, by ROME's rule (repr_tools.get_words_idxs_in_templates):
/// prefix, subject and suffix are tokenised separately; a non-empty prefix must end with a space,
/// which moves onto the subject (" Danielle Darrieux").
/// </summary>
public static class SubjectTokens
{
    /// <summary>Index of the subject's last token in template.format(subject).</summary>
    public static int LastIndex(ITextTokenizer tok, string template, string subject)
    {
        var (prefixLen, wordLen) = Lengths(tok, template, subject);
        return prefixLen + wordLen - 1;
    }

    /// <summary>Index of the subject's first token.</summary>
    public static int FirstIndex(ITextTokenizer tok, string template, string subject) => Lengths(tok, template, subject).PrefixLen;

    private static (int PrefixLen, int WordLen) Lengths(ITextTokenizer tok, string template, string subject)
    {
        int at = template.IndexOf("{}", StringComparison.Ordinal);
        if (at < 0) throw new ArgumentException($"template \"{template}\" has no '{{}}' for the subject");
        string prefix = template[..at], word = subject;
        if (prefix.Length > 0)
        {
            if (prefix[^1] != ' ') throw new ArgumentException($"template \"{template}\": the text before '{{}}' must end with a space");
            prefix = prefix[..^1];
            word = " " + subject.Trim();
        }
        return (prefix.Length == 0 ? 0 : tok.Encode(prefix).Length, tok.Encode(word).Length);
    }
}
