namespace Palimpsest.Tokenization;

/// <summary>
/// Text &lt;-&gt; token ids for one model. Ids are always checked against the MODEL's vocabulary
/// (config.json vocab_size), not only the tokenizer's: the tiny test fixtures borrow the GPT-2
/// tokenizer but have 1000 embeddings, so an id the tokenizer can produce may still be unusable.
/// </summary>
public interface ITextTokenizer
{
    /// <summary>Token ids of <paramref name="text"/>; adds no BOS/EOS. Throws <see cref="ArgumentException"/>
    /// naming the offending piece when an id is outside [0, <see cref="VocabSize"/>).</summary>
    int[] Encode(string text);

    /// <summary>Text of <paramref name="ids"/>. Throws <see cref="ArgumentException"/> for ids outside [0, <see cref="VocabSize"/>).</summary>
    string Decode(ReadOnlySpan<int> ids);

    /// <summary>End-of-sequence id inside the model's vocabulary, or null when there is none.</summary>
    int? EosId { get; }

    /// <summary>The model's vocabulary size (rows of the embedding), which bounds every id.</summary>
    int VocabSize { get; }

    /// <summary>Where the tokenizer came from, for `palimpsest info` (e.g. "byte-level BPE from tokenizer.json").</summary>
    string Source { get; }
}
