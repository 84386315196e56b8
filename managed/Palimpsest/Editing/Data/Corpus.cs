using System.Security.Cryptography;
using Palimpsest.Tokenization;

namespace Palimpsest.Editing.Data;

/// <summary>
/// Token sequences to compute key statistics over, tokenised once. <see cref="Hash"/> identifies the
/// exact ids (so the text and the tokenizer both count) for the statistics cache.
/// </summary>
public sealed class Corpus
{
    private byte[]? _hash;

    public Corpus(string name, IReadOnlyList<int[]> sentences)
    {
        Name = name;
        Sentences = sentences;
        foreach (var s in sentences) TokenCount += s.Length;
    }

    /// <summary>For reports: "counterfact-edit.json facts 0..5000", "wikitext-2-raw.test.txt".</summary>
    public string Name { get; }
    public IReadOnlyList<int[]> Sentences { get; }
    public long TokenCount { get; }

    /// <summary>SHA-256 of the sentence lengths and ids.</summary>
    public byte[] Hash()
    {
        if (_hash is not null) return _hash;
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> b = stackalloc byte[4];
        foreach (var s in Sentences)
        {
            BitConverter.TryWriteBytes(b, s.Length); h.AppendData(b);
            h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(s.AsSpan()));
        }
        return _hash = h.GetHashAndReset();
    }

    /// <summary>
    /// The sentences the shared fact models were trained on: for each CounterFact (EasyEdit format)
    /// record in <paramref name="records"/>, ids(prompt) ++ ids(" " + ground_truth) ++ [EOS], the same for
    /// rephrase_prompt, and ids(locality_prompt) ++ ids(" " + locality_ground_truth) ++ [EOS]; duplicates
    /// dropped (first occurrence kept), as in training (records 0..5000 give 14,512 sentences).
    /// </summary>
    public static Corpus FactSentences(string counterfactPath, ITextTokenizer tok, Range records)
    {
        int eos = tok.EosId ?? throw new ArgumentException("fact sentences end with the EOS token; this tokenizer has none");
        var all = DatasetReader.LoadRecords(counterfactPath, records.End.IsFromEnd ? null : records.End.Value);
        if (all[0].Format != DatasetFormat.CounterFactEasyEdit)
            throw new DatasetFormatException(Path.GetFileName(counterfactPath), -1, null, $"fact sentences need the EasyEdit CounterFact format, not {all[0].Format}");
        // a range reaching past the end of a shorter file means "to the end" (the fact models use 0..5000)
        int start = Math.Min(records.Start.GetOffset(all.Count), all.Count), end = Math.Min(records.End.GetOffset(all.Count), all.Count);
        var (offset, length) = (start, Math.Max(0, end - start));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var list = new List<int[]>();
        void Add(string prompt, string? answer)
        {
            if (answer is null || !seen.Add(prompt + "\u0001" + answer)) return;
            list.Add([.. tok.EncodePrompt(prompt), .. tok.Encode(" " + answer), eos]);
        }
        foreach (var rec in all.Skip(offset).Take(length))
        {
            var r = rec.Request;
            Add(r.FilledPrompt, r.TargetTrue);
            foreach (var p in r.ParaphrasePrompts) Add(p, r.TargetTrue);
            foreach (var p in r.NeighborhoodPrompts) Add(p, r.NeighborhoodAnswer ?? r.TargetTrue);
        }
        return new Corpus($"{Path.GetFileName(counterfactPath)} facts {offset}..{offset + length}", list);
    }

    private const string FactsPrefix = "facts:";

    /// <summary>The file a corpus spec reads ("facts:PATH" -> PATH).</summary>
    public static string SpecPath(string spec) => spec.StartsWith(FactsPrefix, StringComparison.Ordinal) ? spec[FactsPrefix.Length..] : spec;

    /// <summary>
    /// A corpus from its spec, as --stats-corpus and a live model's statistics corpus give it:
    /// "facts:PATH" is the fact sentences of CounterFact records 0..4999 of PATH (fewer when the file
    /// has fewer), anything else a text file. ArgumentException for "facts:" without a path.
    /// </summary>
    public static Corpus FromSpec(string spec, ITextTokenizer tok)
    {
        if (!spec.StartsWith(FactsPrefix, StringComparison.Ordinal)) return TextFile(spec, tok);
        string path = SpecPath(spec);
        if (path.Length == 0) throw new ArgumentException("corpus 'facts:' needs a CounterFact file path, e.g. facts:counterfact-edit.json");
        return FactSentences(path, tok, 0..5000);
    }

    /// <summary>Each non-blank line of a text file (WikiText) as one sentence, tokenised as is.</summary>
    public static Corpus TextFile(string path, ITextTokenizer tok, int? maxLines = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"corpus file '{path}' not found", path);
        var list = new List<int[]>();
        foreach (var line in File.ReadLines(path))
        {
            if (string.IsNullOrWhiteSpace(line)) continue;
            var ids = tok.EncodePrompt(line);
            if (ids.Length > 0) list.Add(ids);
            if (list.Count == maxLines) break;
        }
        if (list.Count == 0) throw new ArgumentException($"corpus file '{path}' has no non-blank lines");
        return new Corpus(Path.GetFileName(path), list);
    }
}
