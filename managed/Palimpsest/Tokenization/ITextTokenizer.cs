namespace Palimpsest.Tokenization;

/// <summary>
/// Text &lt;-&gt; token ids for one model. Ids are always checked against the MODEL's vocabulary
/// (config.json vocab_size), not only the tokenizer's: the tiny test fixtures borrow the GPT-2
/// tokenizer but have 1000 embeddings, so an id the tokenizer can produce may still be unusable.
/// </summary>
public interface ITextTokenizer
{
    /// <summary>Token ids of <paramref name="text"/>; adds no BOS/EOS, so pieces of one sequence can be encoded
    /// separately and joined (a prompt, then its target). Added tokens written in the text (&lt;|begin_of_text|&gt;,
    /// &lt;|im_start|&gt;) are their ids. Throws <see cref="ArgumentException"/> naming the offending piece when an id is
    /// outside [0, <see cref="VocabSize"/>).</summary>
    int[] Encode(string text);

    /// <summary>
    /// Token ids of <paramref name="text"/> as the first text of a sequence the model reads: <see cref="Encode"/>'s ids,
    /// after <see cref="BosId"/> when <see cref="AddsBos"/> (Llama 3, Mistral, Llama 2), as Hugging Face's tokenizer
    /// gives them by default. The one place a BOS is put before a prompt; text that follows other ids uses <see cref="Encode"/>.
    /// </summary>
    int[] EncodePrompt(string text) => AddsBos && BosId is int bos ? [bos, .. Encode(text)] : Encode(text);

    /// <summary>Text of <paramref name="ids"/>. Throws <see cref="ArgumentException"/> for ids outside [0, <see cref="VocabSize"/>).</summary>
    string Decode(ReadOnlySpan<int> ids);

    /// <summary>End-of-sequence id inside the model's vocabulary, or null when there is none.</summary>
    int? EosId { get; }

    /// <summary>Every id generation stops at: <see cref="EosId"/> and the rest of config.json's eos_token_id list
    /// (Llama 3.1 Instruct ends a turn with &lt;|eot_id|&gt;, not &lt;|end_of_text|&gt;). Defaults to <see cref="EosId"/> alone.</summary>
    IReadOnlyList<int> StopIds => EosId is int e ? [e] : [];

    /// <summary>Beginning-of-sequence id inside the model's vocabulary, or null when the tokenizer has none (GPT-2, Qwen2).
    /// Defaults to none, so a tokenizer written for GPT-2-style models need not say.</summary>
    int? BosId => null;

    /// <summary>Whether the model's files say a sequence starts with <see cref="BosId"/> (tokenizer.json's post_processor,
    /// tokenizer_config.json's add_bos_token, SentencePiece's default). False for GPT-2 and Qwen2, and by default.</summary>
    bool AddsBos => false;

    /// <summary>The model's vocabulary size (rows of the embedding), which bounds every id.</summary>
    int VocabSize { get; }

    /// <summary>Where the tokenizer came from, for `palimpsest info` (e.g. "byte-level BPE from tokenizer.json").</summary>
    string Source { get; }
}
