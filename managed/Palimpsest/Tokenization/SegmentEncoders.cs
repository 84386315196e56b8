using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Palimpsest.Tokenization;

/// <summary>
/// Encodes the text between added tokens the way a byte-level tokenizer.json says: its normaliser (NFC for
/// Qwen2), its pre-tokenizer regex (Split with behaviour Isolated: matches and the text between them are the
/// words), then each word's UTF-8 bytes by BPE — Microsoft.ML.Tokenizers' merges, asked for one word at a
/// time so that its own pre-tokenizer and normaliser stay out of the way. With ignore_merges (Llama 3), a
/// word that is itself in the vocabulary is that token, as tiktoken (which trained it) does.
/// </summary>
internal sealed class ByteLevelSegments
{
    private readonly BpeTokenizer _bpe;
    private readonly Regex _split;
    private readonly bool _ignoreMerges;
    private readonly bool _nfc;
    private readonly IReadOnlyDictionary<string, int> _vocab;

    public ByteLevelSegments(BpeTokenizer bpe, HfBpeFiles files)
    {
        _bpe = bpe;
        _split = new Regex(files.Pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant);
        _ignoreMerges = files.IgnoreMerges;
        _nfc = files.Nfc;
        _vocab = files.Vocab;
    }

    public void Encode(string segment, int offset, List<int> ids)
    {
        if (_nfc) segment = Nfc.Normalize(segment);
        int at = 0;
        for (var m = _split.Match(segment); m.Success; m = m.NextMatch())
        {
            if (m.Index > at) Word(segment[at..m.Index], ids);
            if (m.Length > 0) Word(m.Value, ids);
            at = m.Index + m.Length;
        }
        if (at < segment.Length) Word(segment[at..], ids);
    }

    private void Word(string word, List<int> ids)
    {
        if (_ignoreMerges && _vocab.TryGetValue(ToByteLevel(word), out int id)) { ids.Add(id); return; }
        ids.AddRange(_bpe.EncodeToIds(word, considerPreTokenization: false, considerNormalization: false));
    }

    private static readonly char[] ByteChars = BuildByteChars();

    /// <summary>The word's UTF-8 bytes in GPT-2's byte-to-unicode alphabet, the form vocabulary keys take.</summary>
    private static string ToByteLevel(string word)
    {
        var bytes = Encoding.UTF8.GetBytes(word);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++) chars[i] = ByteChars[bytes[i]];
        return new string(chars);
    }

    /// <summary>GPT-2's reversible byte -> printable character map: printable Latin-1 bytes map to themselves, the rest to 256, 257, ...</summary>
    private static char[] BuildByteChars()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
            map[b] = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF ? (char)b : (char)next++;
        return map;
    }
}

/// <summary>How a Metaspace pre-tokenizer (or a Prepend("▁") normaliser) puts "▁" before a piece of text.</summary>
internal enum SpacePrefix
{
    /// <summary>Metaspace prepend_scheme "first" (Mistral v0.3): only the piece at the start of the text, unless it already starts with "▁".</summary>
    First,
    /// <summary>Metaspace prepend_scheme "always": every piece between added tokens, unless it already starts with "▁".</summary>
    Always,
    /// <summary>Metaspace prepend_scheme "never".</summary>
    Never,
    /// <summary>Normaliser Prepend("▁") (Llama 2's tokenizer.json): every piece between added tokens, unconditionally.</summary>
    Prepend,
}

/// <summary>
/// Encodes the text between added tokens as a SentencePiece-style tokenizer.json says (Mistral v0.3, Llama 2;
/// what Hugging Face's fast tokenizer runs): spaces become "▁" with the prefix rule of <see cref="SpacePrefix"/>;
/// a character outside the vocabulary becomes its UTF-8 bytes' &lt;0xNN&gt; tokens (byte_fallback) or &lt;unk&gt;;
/// the runs of known characters between them are merged by Microsoft.ML.Tokenizers' BPE with the file's merges.
/// No merge involves an unknown character, so cutting the text there changes nothing. (tokenizer.model's
/// SentencePiece model gives the same pieces, but Microsoft.ML.Tokenizers 2.0.1 breaks ties between equal
/// scores at the rightmost pair where SentencePiece and Hugging Face take the leftmost: "▁▁▁is" differs.)
/// </summary>
internal sealed class MetaspaceSegments
{
    private const char Space = '\u2581';
    private readonly BpeTokenizer _bpe;
    private readonly IReadOnlyDictionary<string, int> _vocab;
    private readonly Dictionary<int, string> _pieces;
    private readonly Dictionary<int, string> _added;
    private readonly Dictionary<int, byte> _byteOf = [];
    private readonly int[]? _byteIds;
    private readonly int? _unk;
    private readonly bool _fuseUnk;
    private readonly SpacePrefix _prefix;

    public MetaspaceSegments(BpeTokenizer bpe, HfBpeFiles files)
    {
        _bpe = bpe;
        _vocab = files.Vocab;
        _pieces = files.Vocab.ToDictionary(kv => kv.Value, kv => kv.Key);
        _added = files.Special.ToDictionary(kv => kv.Value, kv => kv.Key);
        _prefix = files.Prefix;
        _unk = files.UnknownToken is { } u && files.Vocab.TryGetValue(u, out int unk) ? unk : null;
        _fuseUnk = files.FuseUnknown;
        for (int b = 0; b < 256; b++)
            if (files.Vocab.TryGetValue($"<0x{b:X2}>", out int id)) _byteOf[id] = (byte)b;
        if (files.ByteFallback && _byteOf.Count == 256)
            _byteIds = Enumerable.Range(0, 256).Select(b => files.Vocab[$"<0x{b:X2}>"]).ToArray();
    }

    public void Encode(string segment, int offset, List<int> ids)
    {
        string s = segment.Replace(' ', Space);
        bool add = _prefix switch
        {
            SpacePrefix.First => offset == 0 && !s.StartsWith(Space),
            SpacePrefix.Always => !s.StartsWith(Space),
            SpacePrefix.Prepend => true,
            _ => false,
        };
        if (add) s = Space + s;
        int run = 0;
        bool lastWasUnk = false;
        for (int i = 0; i < s.Length;)
        {
            int len = char.IsSurrogatePair(s, i) ? 2 : 1;
            string c = s.Substring(i, len);
            if (!_vocab.ContainsKey(c))
            {
                if (i > run) { ids.AddRange(_bpe.EncodeToIds(s[run..i], considerPreTokenization: false, considerNormalization: false)); lastWasUnk = false; }
                if (_byteIds is not null) { foreach (byte b in Encoding.UTF8.GetBytes(c)) ids.Add(_byteIds[b]); lastWasUnk = false; }
                else if (_unk is int unk) { if (!(_fuseUnk && lastWasUnk)) ids.Add(unk); lastWasUnk = true; }
                else throw new ArgumentException($"text \"{segment}\" has '{c}', which is not in the vocabulary, and the tokenizer has neither byte fallback nor an unknown token");
                run = i + len;
            }
            i += len;
        }
        if (run < s.Length) ids.AddRange(_bpe.EncodeToIds(s[run..], considerPreTokenization: false, considerNormalization: false));
    }

    /// <summary>
    /// Hugging Face's decoders for these files: added tokens as their text, runs of &lt;0xNN&gt; tokens as the UTF-8
    /// they spell (U+FFFD where they are not valid), "▁" as a space, and the first token's leading space, which
    /// the prefix rule put there, removed.
    /// </summary>
    public string Decode(int[] ids)
    {
        var parts = new List<string>();
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            bool added = _added.TryGetValue(id, out var text);
            if (!added && _byteOf.TryGetValue(id, out byte b)) { bytes.Add(b); continue; }
            if (bytes.Count > 0) { parts.Add(Encoding.UTF8.GetString(bytes.ToArray())); bytes.Clear(); }
            parts.Add(added ? text! : _pieces.TryGetValue(id, out var piece) ? piece.Replace(Space, ' ') : "");
        }
        if (bytes.Count > 0) parts.Add(Encoding.UTF8.GetString(bytes.ToArray()));
        if (_prefix != SpacePrefix.Never && parts.Count > 0 && parts[0].StartsWith(' ')) parts[0] = parts[0][1..];
        return string.Concat(parts);
    }
}
