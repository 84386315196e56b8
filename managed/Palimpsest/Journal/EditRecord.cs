using System.Text;
using System.Text.Json;
using Palimpsest.Editing;

namespace Palimpsest.Journal;

/// <summary>
/// What the journal records about an edit besides its weight deltas: the request(s), the method
/// and its hyper-parameters (the JSON the editor was configured with). Layers, the content hash and
/// ||ΔW||_F are derived from the deltas by <see cref="EditedModel.Apply"/>.
/// </summary>
public sealed record EditRecord
{
    /// <summary>"rome", "memit", "alphaedit", ...</summary>
    public required string Method { get; init; }
    public IReadOnlyList<EditRequest> Requests { get; init; } = [];
    /// <summary>A JSON object (validated on apply).</summary>
    public string HyperParametersJson { get; init; } = "{}";
    /// <summary>What the edit adds to its editor's memory beyond the weights (<see cref="IEditor.LastMemoryContribution"/>), journaled with it; null: nothing.</summary>
    public IReadOnlyDictionary<string, double[]>? EditorMemory { get; init; }
    /// <summary>When the edit was made; null = now.</summary>
    public DateTimeOffset? Time { get; init; }

    /// <summary>The requests as a JSON array with the dataset field names (subject, prompt, target_new, ...).</summary>
    public string RequestsJson()
    {
        var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartArray();
            foreach (var r in Requests)
            {
                w.WriteStartObject();
                if (r.CaseId is not null) w.WriteString("case_id", r.CaseId);
                w.WriteString("subject", r.Subject);
                w.WriteString("prompt", r.Prompt);
                w.WriteString("target_new", r.TargetNew);
                if (r.TargetTrue is not null) w.WriteString("target_true", r.TargetTrue);
                WriteList(w, "paraphrase_prompts", r.ParaphrasePrompts);
                WriteList(w, "neighborhood_prompts", r.NeighborhoodPrompts);
                if (r.NeighborhoodAnswer is not null) w.WriteString("neighborhood_answer", r.NeighborhoodAnswer);
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    private static void WriteList(Utf8JsonWriter w, string name, IReadOnlyList<string> items)
    {
        if (items.Count == 0) return;
        w.WriteStartArray(name);
        foreach (var s in items) w.WriteStringValue(s);
        w.WriteEndArray();
    }

    /// <summary>"Danielle Darrieux", or "Danielle Darrieux (+4 more)" for a batch; "" without requests.</summary>
    internal string SubjectSummary() => Summary(r => r.Subject);

    internal string TargetSummary() => Summary(r => r.TargetNew);

    private string Summary(Func<EditRequest, string> field) =>
        Requests.Count switch
        {
            0 => "",
            1 => field(Requests[0]),
            _ => $"{field(Requests[0])} (+{Requests.Count - 1} more)",
        };
}

/// <summary>One row of the journal, as `palimpsest journal DIR` lists it. Outcome: what was seen after the edit when it did not take (null: it took, or was not checked).</summary>
/// <param name="DeltaNorm">||ΔW||_F of the whole edit (over all its layers).</param>
/// <param name="Generation">The checkpoint generation this edit produced.</param>
public sealed record JournalEntry(
    long Id, DateTimeOffset Time, string Method, string Subject, string Target, IReadOnlyList<int> Layers,
    double DeltaNorm, DateTimeOffset? RevertedTime, string ContentHash, long Generation,
    string RequestsJson, string HyperParametersJson, string? Outcome = null)
{
    public bool Reverted => RevertedTime is not null;

    /// <summary>The edit's requests, read back from <see cref="RequestsJson"/>.</summary>
    public IReadOnlyList<EditRequest> ParseRequests()
    {
        using var doc = JsonDocument.Parse(RequestsJson);
        static string? Str(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
        static IReadOnlyList<string> List(JsonElement e, string name) =>
            e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().Select(x => x.GetString() ?? "").ToList() : [];
        return doc.RootElement.EnumerateArray().Select(r => new EditRequest
        {
            CaseId = Str(r, "case_id"), Subject = Str(r, "subject") ?? "", Prompt = Str(r, "prompt") ?? "", TargetNew = Str(r, "target_new") ?? "",
            TargetTrue = Str(r, "target_true"), ParaphrasePrompts = List(r, "paraphrase_prompts"), NeighborhoodPrompts = List(r, "neighborhood_prompts"),
            NeighborhoodAnswer = Str(r, "neighborhood_answer"),
        }).ToList();
    }
}

/// <summary>A journal or edited-model folder that cannot be used; the message is one line naming the file.</summary>
/// <param name="busy">the folder is held by another process (its lock): a reader can read around it, a writer can wait</param>
public sealed class JournalException(string message, bool busy = false) : Exception(message)
{
    /// <summary>The folder is held by another process; the message says so.</summary>
    public bool Busy { get; } = busy;
}
