using Microsoft.ML.Tokenizers;

namespace Palimpsest.Tokenization;

/// <summary>
/// <see cref="ITextTokenizer"/> over a Microsoft.ML.Tokenizers <see cref="Tokenizer"/>, which must
/// have been created without BOS/EOS insertion. Adds the range checks the library does not do
/// (it decodes unknown ids to an empty string instead of failing). With <c>segments</c>, added tokens are
/// found here and the text between them is encoded by that function (tokenizer.json's rules), else the
/// library encodes the whole text.
/// </summary>
/// <param name="Added">Added tokens, found in raw text first.</param>
/// <param name="EncodeSegment">Appends the ids of the text between two added tokens, given its offset in the whole text.</param>
/// <param name="Decode">The files' own decoder where the library's would differ; null to use the library's.</param>
internal sealed record HfRules(AddedTokens Added, Action<string, int, List<int>> EncodeSegment, Func<int[], string>? Decode = null);

/// <summary>See <see cref="HfRules"/> and the constructor.</summary>
internal sealed class MlTextTokenizer : ITextTokenizer
{
    private readonly Tokenizer _inner;
    private readonly HfRules? _segments;

    public MlTextTokenizer(Tokenizer inner, int modelVocab, int? eosId, string source,
        (int? Id, bool Adds) bos = default, HfRules? segments = null, IReadOnlyList<int>? moreStops = null)
    {
        if (modelVocab <= 0) throw new ArgumentOutOfRangeException(nameof(modelVocab), $"vocabulary size must be positive (got {modelVocab})");
        _inner = inner;
        _segments = segments;
        VocabSize = modelVocab;
        // An EOS the model cannot emit (fixtures: eos 50256, vocab 1000) is no EOS at all.
        EosId = eosId is int e && e >= 0 && e < modelVocab ? e : null;
        // A BOS the files ask for must be one the model can read: the factory refuses the folder otherwise.
        BosId = bos.Id is int b && b >= 0 && b < modelVocab ? b : null;
        AddsBos = bos.Adds && BosId is not null;
        Source = source;
        StopIds = (EosId is int eos ? [eos] : Array.Empty<int>())
            .Concat(moreStops ?? []).Where(i => i >= 0 && i < modelVocab).Distinct().ToArray();
    }

    public int VocabSize { get; }
    public int? EosId { get; }
    public IReadOnlyList<int> StopIds { get; }
    public int? BosId { get; }
    public bool AddsBos { get; }

    /// <summary>The wrapped tokenizer (for <see cref="TokenizerFactory.ByteRanks"/>).</summary>
    internal Tokenizer Inner => _inner;
    public string Source { get; }

    public int[] Encode(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        IReadOnlyList<int> ids;
        if (_segments is { } rules)
        {
            var list = new List<int>();
            rules.Added.Encode(text, list, rules.EncodeSegment);
            ids = list;
        }
        else ids = _inner.EncodeToIds(text);
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
        return _segments?.Decode is { } decode ? decode(ids.ToArray()) : _inner.Decode(ids.ToArray()) ?? "";
    }

    private static string Shorten(string s) => s.Length <= 60 ? s : s[..57] + "...";

    private static string Quote(string s) => "\"" + s.Replace("\n", "\\n") + "\"";
}
