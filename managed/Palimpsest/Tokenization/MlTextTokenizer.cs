using Microsoft.ML.Tokenizers;

namespace Palimpsest.Tokenization;

/// <summary>
/// <see cref="ITextTokenizer"/> over a Microsoft.ML.Tokenizers <see cref="Tokenizer"/>, which must
/// have been created without BOS/EOS insertion. Adds the range checks the library does not do
/// (it decodes unknown ids to an empty string instead of failing).
/// </summary>
internal sealed class MlTextTokenizer : ITextTokenizer
{
    private readonly Tokenizer _inner;

    public MlTextTokenizer(Tokenizer inner, int modelVocab, int? eosId, string source)
    {
        if (modelVocab <= 0) throw new ArgumentOutOfRangeException(nameof(modelVocab), $"vocabulary size must be positive (got {modelVocab})");
        _inner = inner;
        VocabSize = modelVocab;
        // An EOS the model cannot emit (fixtures: eos 50256, vocab 1000) is no EOS at all.
        EosId = eosId is int e && e >= 0 && e < modelVocab ? e : null;
        Source = source;
    }

    public int VocabSize { get; }
    public int? EosId { get; }

    /// <summary>The wrapped tokenizer (for <see cref="TokenizerFactory.ByteRanks"/>).</summary>
    internal Tokenizer Inner => _inner;
    public string Source { get; }

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = _inner.EncodeToIds(text);
        var result = new int[ids.Count];
        for (int i = 0; i < result.Length; i++)
        {
            int id = ids[i];
            if (id < 0 || id >= VocabSize)
                throw new ArgumentException(
                    $"text \"{Shorten(text)}\" encodes to token id {id} ({Quote(_inner.Decode([id]))}), " +
                    $"outside the model's vocabulary of {VocabSize} ids (tokenizer: {Source})");
            result[i] = id;
        }
        return result;
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
            if (id < 0 || id >= VocabSize)
                throw new ArgumentException($"token id {id} is outside the model's vocabulary [0, {VocabSize})");
        return _inner.Decode(ids.ToArray()) ?? "";
    }

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..57] + "...";

    private static string Quote(string s) => "\"" + s.Replace("\n", "\\n") + "\"";
}
