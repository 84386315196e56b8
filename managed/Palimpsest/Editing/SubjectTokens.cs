using Palimpsest.Tokenization;

namespace Palimpsest.Editing;

/// <summary>Which token of the subject an editor reads (ROME's fact_token "subject_last", ...).</summary>
public enum SubjectToken
{
    /// <summary>The subject's last token ("subject_last").</summary>
    Last,
    /// <summary>The subject's first token ("subject_first").</summary>
    First,
    /// <summary>The token after the subject; the subject's last when nothing follows ("subject_first_after_last").</summary>
    FirstAfterLast,
}

/// <summary>A filled template's token ids and the index of the chosen subject token in them.</summary>
public readonly record struct SubjectPosition(int[] Ids, int Index);

/// <summary>
/// Subject-token lookup with ROME's convention (kmeng01/rome rome/repr_tools.py
/// get_words_idxs_in_templates). Context templates are in <see cref="ContextTemplates"/>.
/// </summary>
public static class SubjectTokens
{
    /// <summary>
    /// Index of the subject's token in template.format(subject), computed as ROME does: prefix,
    /// subject and suffix are tokenised separately; a non-empty prefix must end with a space, which
    /// moves onto the subject (" " + subject.Trim()), so "of Danielle" counts "ĠDanielle" as the
    /// subject's. The index is in the tokenisation of the whole filled text (ROME runs the model on
    /// that), which for byte-level BPE agrees with the parts. Throws ArgumentException for a template
    /// without exactly one "{}" or a prefix not ending in a space.
    /// </summary>
    public static int Index(ITextTokenizer tok, string template, string subject, SubjectToken which = SubjectToken.Last)
    {
        var (prefix, word, suffix) = Split(template, subject);
        // The filled template is read as a sequence's start (EncodePrompt): a BOS the tokenizer puts first shifts every index.
        int pl = tok.EncodePrompt("").Length + tok.Encode(prefix).Length, wl = tok.Encode(word).Length;
        if (wl == 0) throw new ArgumentException($"subject \"{subject}\" encodes to no tokens");
        return which switch
        {
            SubjectToken.Last => pl + wl - 1,
            SubjectToken.First => pl,
            // ROME: with an empty suffix there is no token after the subject, so it falls back to the last.
            SubjectToken.FirstAfterLast => pl + wl - (suffix.Length == 0 || tok.Encode(suffix).Length == 0 ? 1 : 0),
            _ => throw new ArgumentOutOfRangeException(nameof(which)),
        };
    }

    /// <summary>Index of the subject's last token (ROME's "subject_last").</summary>
    public static int LastIndex(ITextTokenizer tok, string template, string subject) => Index(tok, template, subject, SubjectToken.Last);

    /// <summary>Index of the subject's first token.</summary>
    public static int FirstIndex(ITextTokenizer tok, string template, string subject) => Index(tok, template, subject, SubjectToken.First);

    /// <summary>Ids of template.format(subject) (tokenised whole) and the subject token's index in them.</summary>
    public static SubjectPosition Locate(ITextTokenizer tok, string template, string subject, SubjectToken which = SubjectToken.Last)
    {
        int index = Index(tok, template, subject, which);
        var ids = tok.EncodePrompt(Fill(template, subject));
        if (index >= ids.Length)
            throw new ArgumentException($"subject token index {index} is past the {ids.Length} tokens of \"{Fill(template, subject)}\"");
        return new SubjectPosition(ids, index);
    }

    /// <summary>template with its "{}" replaced by <paramref name="value"/> (Python's str.format with one field).</summary>
    public static string Fill(string template, string value)
    {
        int at = CheckTemplate(template);
        return string.Concat(template.AsSpan(0, at), value, template.AsSpan(at + 2));
    }

    private static (string Prefix, string Word, string Suffix) Split(string template, string subject)
    {
        int at = CheckTemplate(template);
        string prefix = template[..at], suffix = template[(at + 2)..], word = subject;
        if (prefix.Length > 0)
        {
            if (prefix[^1] != ' ')
                throw new ArgumentException($"template \"{template}\": the text before '{{}}' must end with a space (ROME's convention)");
            prefix = prefix[..^1];
            word = " " + subject.Trim();
        }
        return (prefix, word, suffix);
    }

    private static int CheckTemplate(string template)
    {
        int at = template.IndexOf("{}", StringComparison.Ordinal);
        if (at < 0 || template.IndexOf("{}", at + 2, StringComparison.Ordinal) >= 0)
            throw new ArgumentException($"template \"{template}\" must contain exactly one '{{}}'");
        return at;
    }
}
