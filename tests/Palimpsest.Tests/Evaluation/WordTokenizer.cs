using System.Text.RegularExpressions;
using Palimpsest.Tokenization;

namespace Palimpsest.Tests.Evaluation;

/// <summary>
/// A GPT-2-like word tokenizer for tiny models: a token is an optional leading space plus a word or
/// a punctuation mark (" French" is one token), looked up in a fixed list. Unknown words throw.
/// </summary>
internal sealed partial class WordTokenizer(IReadOnlyList<string> vocab) : ITextTokenizer
{
    private readonly Dictionary<string, int> _ids = vocab.Select((w, i) => (w, i)).ToDictionary(x => x.w, x => x.i);

    public static WordTokenizer Facts() => new([
        "<eos>", "The", " mother", " tongue", " of", " Danielle", " Darrieux", " is", " French", " English",
        " German", "Michel", " Rocard", " a", " native", " speaker", "Where", ",", " people", " speak", " the",
        " language", " from", "What", "?", " capital", " Paris", " Berlin", " city", " Rome", " in", " and",
        " x", " y", " z", " w", " v"]);

    public int? EosId => 0;
    public int VocabSize => vocab.Count;
    public string Source => "test word list";

    public int[] Encode(string text) =>
        Pieces().Matches(text).Select(m => _ids.TryGetValue(m.Value, out int id) ? id
            : throw new ArgumentException($"word \"{m.Value}\" not in the test vocabulary")).ToArray();

    public string Decode(ReadOnlySpan<int> ids)
    {
        var s = new System.Text.StringBuilder();
        foreach (int id in ids) s.Append(vocab[id]);
        return s.ToString();
    }

    public string Word(int id) => vocab[id].TrimStart();

    [GeneratedRegex(@" ?(?:\w+|[^\w\s])")]
    private static partial Regex Pieces();
}
