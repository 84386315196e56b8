using System.Text;
using System.Text.RegularExpressions;

namespace Palimpsest.Tests.Tokenization;

/// <summary>
/// The files' rules written out plainly, independent of the library and of Microsoft.ML.Tokenizers, to
/// derive the expected ids: added tokens by longest match at each position; then, for byte-level BPE, the
/// normal form, the regex words and the gaps between them, each word's bytes in GPT-2's alphabet, and the
/// merges applied lowest rank first; for SentencePiece BPE, "▁" for spaces and the prefix rule, then the
/// adjacent pair whose joined piece has the highest score merged first, and unknown pieces as their
/// UTF-8 bytes' &lt;0xNN&gt; pieces.
/// </summary>
internal static class NaiveTokenizers
{
    public static List<int> ByteLevel(string text, IReadOnlyDictionary<string, int> added, IReadOnlyDictionary<string, int> vocab,
        IReadOnlyList<string> merges, string regex, bool ignoreMerges, bool nfc)
    {
        var rank = new Dictionary<(string, string), int>();
        for (int i = 0; i < merges.Count; i++) { var p = merges[i].Split(' '); rank.TryAdd((p[0], p[1]), i); }
        var map = TinyBpe.ByteToUnicode();
        var ids = new List<int>();
        foreach (var (piece, _, special) in SplitAdded(text, added))
        {
            if (special is int s) { ids.Add(s); continue; }
            // NFC of the test texts: the only sequence in them it changes is "e" + U+0301, composed to "é"
            // (string.Normalize cannot be used: under invariant globalization it leaves such text unchanged).
            string t = nfc ? piece.Replace("e\u0301", "\u00e9") : piece;
            var words = new List<string>();
            int at = 0;
            foreach (Match m in Regex.Matches(t, regex))
            {
                if (m.Index > at) words.Add(t[at..m.Index]);
                if (m.Length > 0) words.Add(m.Value);
                at = m.Index + m.Length;
            }
            if (at < t.Length) words.Add(t[at..]);
            foreach (var w in words)
            {
                var symbols = Encoding.UTF8.GetBytes(w).Select(b => map[b]).ToList();
                if (ignoreMerges && vocab.TryGetValue(string.Concat(symbols), out int whole)) { ids.Add(whole); continue; }
                while (true)
                {
                    int best = -1, bestRank = int.MaxValue;
                    for (int i = 0; i + 1 < symbols.Count; i++)
                        if (rank.TryGetValue((symbols[i], symbols[i + 1]), out int r) && r < bestRank) { best = i; bestRank = r; }
                    if (best < 0) break;
                    symbols[best] += symbols[best + 1];
                    symbols.RemoveAt(best + 1);
                }
                ids.AddRange(symbols.Select(x => vocab[x]));
            }
        }
        return ids;
    }

    /// <summary>
    /// SentencePiece BPE under tokenizer.json's whitespace rule: "▁" before the piece at offset 0 only ("first"), before
    /// every piece ("always"), in both cases unless it starts with one already; or before every piece regardless ("llama2": Prepend).
    /// </summary>
    public static List<int> SentencePiece(string text, IReadOnlyDictionary<string, int> added, IReadOnlyList<(string Piece, float Score, int Type)> pieces, string rule)
    {
        var byPiece = new Dictionary<string, (int Id, float Score, int Type)>();
        for (int i = 0; i < pieces.Count; i++) byPiece[pieces[i].Piece] = (i, pieces[i].Score, pieces[i].Type);
        var ids = new List<int>();
        foreach (var (piece, offset, special) in SplitAdded(text, added))
        {
            if (special is int s) { ids.Add(s); continue; }
            string t = piece.Replace(' ', '\u2581');
            if (rule == "llama2" || (rule == "always" || offset == 0) && !t.StartsWith('\u2581')) t = "\u2581" + t;
            var symbols = new List<string>();
            for (int i = 0; i < t.Length; i += char.IsSurrogatePair(t, i) ? 2 : 1) symbols.Add(char.ConvertFromUtf32(char.ConvertToUtf32(t, i)));
            while (true)
            {
                int best = -1; float bestScore = float.NegativeInfinity;
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (byPiece.TryGetValue(symbols[i] + symbols[i + 1], out var p) && p.Type == 1 && p.Score > bestScore) { best = i; bestScore = p.Score; }
                if (best < 0) break;
                symbols[best] += symbols[best + 1];
                symbols.RemoveAt(best + 1);
            }
            foreach (var sym in symbols)
                if (byPiece.TryGetValue(sym, out var p) && p.Type == 1) ids.Add(p.Id);
                else ids.AddRange(Encoding.UTF8.GetBytes(sym).Select(b => byPiece[$"<0x{b:X2}>"].Id));
        }
        return ids;
    }

    /// <summary>The text cut at its added tokens, taking the longest one that starts at each position.</summary>
    private static List<(string Piece, int Offset, int? Special)> SplitAdded(string text, IReadOnlyDictionary<string, int> added)
    {
        var parts = new List<(string, int, int?)>();
        int start = 0, i = 0;
        while (i < text.Length)
        {
            string? hit = added.Keys.Where(a => string.CompareOrdinal(text, i, a, 0, a.Length) == 0 && i + a.Length <= text.Length)
                                    .OrderByDescending(a => a.Length).FirstOrDefault();
            if (hit is null) { i++; continue; }
            if (i > start) parts.Add((text[start..i], start, null));
            parts.Add((hit, i, added[hit]));
            i += hit.Length;
            start = i;
        }
        if (start < text.Length) parts.Add((text[start..], start, null));
        return parts;
    }
}
