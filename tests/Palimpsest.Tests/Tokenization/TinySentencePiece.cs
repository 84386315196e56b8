namespace Palimpsest.Tests.Tokenization;

/// <summary>
/// A tiny SentencePiece BPE model (tokenizer.model) written as raw protobuf: &lt;unk&gt;, &lt;s&gt;,
/// &lt;/s&gt;, single characters and a few merged pieces with Llama's normalizer settings (dummy
/// prefix, "▁" for spaces), Mistral's control pieces [INST] [/INST], and the 256 byte pieces &lt;0x00&gt;..&lt;0xFF&gt;
/// with byte fallback on, so characters outside the vocabulary ("x", "é", emoji) become their UTF-8 bytes.
/// </summary>
internal static class TinySentencePiece
{
    // (piece, score, type) with type 1 = normal, 2 = unknown, 3 = control, 6 = byte; ids are the positions, laid
    // out as Llama's and Mistral's are: control pieces, the 256 bytes, then the merged vocabulary.
    public static readonly (string Piece, float Score, int Type)[] Pieces =
    [
        ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3), ("[INST]", 0, 3), ("[/INST]", 0, 3),
        .. Enumerable.Range(0, 256).Select(b => ($"<0x{b:X2}>", 0f, 6)),
        ("▁", -1, 1), ("t", -2, 1), ("h", -3, 1), ("e", -4, 1), ("a", -5, 1), ("n", -6, 1), ("d", -7, 1),
        ("▁t", -8, 1), ("he", -9, 1), ("▁the", -10, 1), ("an", -11, 1), ("▁an", -12, 1), ("▁and", -13, 1),
        ("▁▁", -14, 1), ("i", -15, 1), ("s", -16, 1), ("▁i", -17, 1), ("▁is", -18, 1),
    ];
    public const int Bos = 1, Eos = 2, Inst = 3, EndInst = 4;
    public static readonly int The = Id("▁the"), And = Id("▁and");

    public static int Id(string piece) => Array.FindIndex(Pieces, p => p.Piece == piece);

    /// <summary>
    /// The merges Hugging Face's converter writes into tokenizer.json for these pieces: for each normal piece, best
    /// score first, every split into two normal pieces.
    /// </summary>
    public static IEnumerable<string> Merges() =>
        from p in Pieces.Where(p => p.Type == 1 && p.Piece.Length > 1).OrderByDescending(p => p.Score)
        from k in Enumerable.Range(1, p.Piece.Length - 1)
        where Pieces.Any(q => q.Type == 1 && q.Piece == p.Piece[..k]) && Pieces.Any(q => q.Type == 1 && q.Piece == p.Piece[k..])
        select p.Piece[..k] + " " + p.Piece[k..];

    public static void Write(string folder)
    {
        var model = new List<byte>();
        foreach (var (piece, score, type) in Pieces)
        {
            var p = new List<byte>();
            Bytes(p, 1, System.Text.Encoding.UTF8.GetBytes(piece));
            p.Add((2 << 3) | 5); p.AddRange(BitConverter.GetBytes(score));
            Varint(p, 3, type);
            Bytes(model, 1, p.ToArray());
        }
        var trainer = new List<byte>();
        Varint(trainer, 3, 2);   // model_type = BPE
        Varint(trainer, 35, 1);  // byte_fallback
        Varint(trainer, 40, 0);  // unk_id
        Varint(trainer, 41, Bos);
        Varint(trainer, 42, Eos);
        Bytes(model, 2, trainer.ToArray());
        var normalizer = new List<byte>();
        Bytes(normalizer, 1, "identity"u8.ToArray());
        Varint(normalizer, 3, 1); // add_dummy_prefix
        Varint(normalizer, 4, 0); // remove_extra_whitespaces
        Varint(normalizer, 5, 1); // escape_whitespaces
        Bytes(model, 3, normalizer.ToArray());
        File.WriteAllBytes(Path.Combine(folder, "tokenizer.model"), model.ToArray());
    }

    private static void Varint(List<byte> b, int field, long value) { Raw(b, (ulong)(field << 3)); Raw(b, (ulong)value); }

    private static void Bytes(List<byte> b, int field, byte[] data) { Raw(b, (ulong)((field << 3) | 2)); Raw(b, (ulong)data.Length); b.AddRange(data); }

    private static void Raw(List<byte> b, ulong v)
    {
        while (v >= 0x80) { b.Add((byte)(v | 0x80)); v >>= 7; }
        b.Add((byte)v);
    }
}
