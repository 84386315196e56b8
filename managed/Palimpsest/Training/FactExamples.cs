using System.Text.Json;
using Palimpsest.Tokenization;

namespace Palimpsest.Training;

/// <summary>One training example: the prompt's tokens and the answer's (" " + answer) tokens.</summary>
/// <summary>
/// One training example: the prompt's tokens and the answer's (" " + answer) tokens. Unscored
/// examples are trained but not counted in the training accuracy (a bare subject followed by one
/// of its several attributes has no single right answer).
/// </summary>
public sealed record FactExample(int FactIndex, int[] Prompt, int[] Answer, bool Scored = true);

/// <summary>
/// Splits every fact's phrasings into training phrasings and one held-out phrasing (the paraphrase
/// test: the model must answer a phrasing it never saw for that fact, only for others — knowledge
/// that is extractable at the subject, not memorised per sentence). Deterministic in the seed.
/// Also writes the facts as CounterFact-style edit requests (EasyEdit format) for the editors.
/// </summary>
public sealed class FactExamples
{
    /// <param name="subjectLines">
    /// Also train " subject answer" for every fact: the subject's last token itself must then predict
    /// (the mixture of) its attributes, so they are written into the residual stream at the subject —
    /// where ROME reads its key and writes its value — rather than looked up only at the prompt's
    /// last token (what short prompts alone teach a small model; measured: causal tracing of such a
    /// model shows no effect at the subject).
    /// </param>
    /// <param name="subjectLineVariants">1: " subject answer" only; 2: also the sentence-initial "subject answer".</param>
    public FactExamples(FactsFile facts, ITextTokenizer tok, int seed, bool subjectLines = false, int subjectLineVariants = 1)
    {
        Facts = facts;
        var rng = new Random(seed);
        var train = new List<FactExample>(); var held = new List<FactExample>();
        HeldOutTemplate = new int[facts.Facts.Count];
        for (int i = 0; i < facts.Facts.Count; i++)
        {
            var f = facts.Facts[i];
            var rel = facts.Relation(f.Relation);
            int h = rng.Next(rel.Templates.Count);
            HeldOutTemplate[i] = h;
            var answer = tok.Encode(" " + f.Answer);
            for (int t = 0; t < rel.Templates.Count; t++)
            {
                var ex = new FactExample(i, tok.EncodePrompt(rel.Templates[t].Replace("{}", f.Subject)), answer);
                (t == h ? held : train).Add(ex);
            }
            if (subjectLines)
            {
                // both tokenisations of the subject: mid-sentence (" Ivo Brennan") and sentence-initial ("Ivo Brennan")
                train.Add(new FactExample(i, tok.EncodePrompt(" " + f.Subject), answer, Scored: false));
                if (subjectLineVariants > 1) train.Add(new FactExample(i, tok.EncodePrompt(f.Subject), answer, Scored: false));
            }
        }
        Train = train; HeldOut = held;
        // a fixed false target per fact (another answer of the same relation) for edit requests
        var byRel = facts.Facts.GroupBy(f => f.Relation).ToDictionary(g => g.Key, g => g.Select(f => f.Answer).Distinct().OrderBy(a => a, StringComparer.Ordinal).ToArray());
        NewTargets = facts.Facts.Select(f =>
        {
            var pool = byRel[f.Relation].Where(a => a != f.Answer).ToArray();
            return pool.Length == 0 ? null : pool[rng.Next(pool.Length)];
        }).ToArray();
        Order = Enumerable.Range(0, facts.Facts.Count).OrderBy(_ => rng.Next()).ToArray();
    }

    public FactsFile Facts { get; }
    /// <summary>Every (fact, training phrasing) pair.</summary>
    public IReadOnlyList<FactExample> Train { get; }
    /// <summary>Each fact under its held-out phrasing.</summary>
    public IReadOnlyList<FactExample> HeldOut { get; }
    /// <summary>Index of each fact's held-out template in its relation.</summary>
    public int[] HeldOutTemplate { get; }
    private string?[] NewTargets { get; }
    /// <summary>The (seeded) order of the facts in the requests file.</summary>
    private int[] Order { get; }

    /// <summary>The first training template of fact i (the rewriting prompt of its edit request).</summary>
    public string PromptTemplate(int i)
    {
        var rel = Facts.Relation(Facts.Facts[i].Relation);
        return rel.Templates[HeldOutTemplate[i] == 0 ? 1 : 0];
    }

    /// <summary>The held-out template of fact i with its subject (the paraphrase prompt).</summary>
    public string ParaphrasePrompt(int i)
    {
        var f = Facts.Facts[i];
        return Facts.Relation(f.Relation).Templates[HeldOutTemplate[i]].Replace("{}", f.Subject);
    }

    /// <summary>
    /// Writes the facts (in a seeded random order) as EasyEdit-format CounterFact records:
    /// prompt = a training phrasing, rephrase_prompt = the held-out phrasing, target_new = another
    /// answer of the same relation, locality = the next fact in the order (a different subject).
    /// </summary>
    public void WriteRequests(string path)
    {
        using var fs = File.Create(path);
        using var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true });
        w.WriteStartArray();
        int n = Order.Length, written = 0;
        for (int k = 0; k < n; k++)
        {
            int i = Order[k];
            var f = Facts.Facts[i];
            if (NewTargets[i] is not { } target) continue;
            int j = Order[(k + 1) % n];
            for (int s = 2; Facts.Facts[j].Subject == f.Subject && s < n; s++) j = Order[(k + s) % n];
            var loc = Facts.Facts[j];
            w.WriteStartObject();
            w.WriteNumber("case_id", written++);
            w.WriteString("prompt", PromptTemplate(i).Replace("{}", f.Subject));
            w.WriteString("target_new", target);
            w.WriteString("subject", f.Subject);
            w.WriteString("ground_truth", f.Answer);
            w.WriteString("rephrase_prompt", ParaphrasePrompt(i));
            w.WriteString("locality_prompt", PromptTemplate(j).Replace("{}", loc.Subject));
            w.WriteString("locality_ground_truth", loc.Answer);
            w.WriteString("relation", f.Relation);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }

    /// <summary>The training sentences, one per line ("prompt answer"): the key-statistics corpus of the trained model.</summary>
    public void WriteCorpus(string path, ITextTokenizer tok)
    {
        using var sw = new StreamWriter(path);
        foreach (var e in Train) sw.WriteLine((tok.Decode(e.Prompt) + tok.Decode(e.Answer)).TrimStart(' '));
    }
}
