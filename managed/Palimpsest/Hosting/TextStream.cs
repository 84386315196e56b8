using Palimpsest.Tokenization;

namespace Palimpsest.Hosting;

/// <summary>
/// The text of a completion as its tokens arrive: decoded from all ids so far (a byte-level token
/// may be half of a character), cut at the first stop string, and handed out in pieces that are
/// final — a piece is held back while it ends in half a character or in the start of a stop string.
/// </summary>
internal sealed class TextStream(ITextTokenizer tok, IReadOnlyList<string> stops, Action<string>? onText)
{
    private readonly List<int> _ids = [];
    private int _emitted;

    public string Text { get; private set; } = "";
    public int Count => _ids.Count;
    public int[] Ids => [.. _ids];

    /// <summary>Adds a token; true when the text now holds a stop string (the text is cut before it).</summary>
    public bool Add(int id)
    {
        _ids.Add(id);
        Text = tok.Decode(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids));
        int cut = -1;
        foreach (var s in stops)
        {
            int at = Text.IndexOf(s, Math.Max(0, _emitted - s.Length), StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Text = Text[..cut];
            Emit(Text.Length);
            return true;
        }
        Emit(Final());
        return false;
    }

    /// <summary>Hands out whatever is held back (the completion ended).</summary>
    public void Finish() => Emit(Text.Length);

    // the length of text that cannot change any more: not a trailing half character, not a trailing prefix of a stop string
    private int Final()
    {
        int n = Text.Length;
        if (n > 0 && Text[n - 1] == '\uFFFD') n--;
        int hold = 0;
        foreach (var s in stops)
            for (int k = Math.Min(s.Length - 1, n); k > hold; k--)
                if (string.CompareOrdinal(Text, n - k, s, 0, k) == 0) { hold = k; break; }
        return n - hold;
    }

    private void Emit(int upTo)
    {
        if (upTo <= _emitted) return;
        onText?.Invoke(Text[_emitted..upTo]);
        _emitted = upTo;
    }
}
