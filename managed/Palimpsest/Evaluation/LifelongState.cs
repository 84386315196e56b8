using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Evaluation;

/// <summary>
/// Where a lifelong stream of weight edits stands after a batch: everything the harness needs to go
/// on from there in another process and reach the uninterrupted run's checkpoints bit for bit.
/// Edits / Batches: requests and batches applied; ES, GS, LS: the per-request scores so far (see
/// <see cref="LifelongCheckpoint"/>); Checkpoints: those reached; Kept: the indices of the held-out
/// facts the unedited model answered (ORS's denominator; a resumed run checks it against the model it
/// is given); DownProjections: WDown [f·d] of every layer the stream has changed, as it is now;
/// EditorMemory: what an <see cref="Palimpsest.Editing.IRememberingEditor"/> remembers of its edits
/// (AlphaEdit's C_p), empty for the others.
/// Run: the caller's description of the run (model, dataset, method, hyper-parameters, ...), which a
/// resume must match.
/// </summary>
public sealed record LifelongState(string Run, int Edits, int Batches, double[] ES, double[] GS, double[] LS,
    IReadOnlyList<LifelongCheckpoint> Checkpoints, int[] Kept, IReadOnlyDictionary<int, double[]> DownProjections,
    IReadOnlyDictionary<string, double[]> EditorMemory);

/// <summary>
/// A lifelong run's state on disk, in a folder: state.json (the scalars and lists) naming its
/// weights file, weights-{edits}.safetensors (F64 "down.{layer}" [f, d], and "memory.{name}" [n] for
/// the editor's memory). Both are written
/// atomically, the weights first, and state.json last: a process killed at any point leaves the
/// previous state whole or the new one; older weights files are removed after the switch.
/// </summary>
public static class LifelongStateFile
{
    private const string Format = "palimpsest-lifelong-state-v1";
    private const string StateName = "state.json";

    /// <summary>DIR/state.json exists (a saved state to resume from).</summary>
    public static bool Exists(string dir) => File.Exists(Path.Combine(dir, StateName));

    /// <param name="f">the model's DFf, the rows of each saved WDown</param>
    public static void Save(string dir, LifelongState s, int f)
    {
        Directory.CreateDirectory(dir);
        string weights = $"weights-{s.Edits:D6}.safetensors";
        SafetensorsWriter.Write(Path.Combine(dir, weights), s.DownProjections.OrderBy(kv => kv.Key)
            .Select(kv => ($"down.{kv.Key}", new HostTensor([f, kv.Value.Length / f], kv.Value), "F64"))
            .Concat(s.EditorMemory.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => ($"memory.{kv.Key}", new HostTensor([kv.Value.Length], kv.Value), "F64")))
            .ToList());
        var json = new JsonObject
        {
            ["format"] = Format, ["run"] = JsonNode.Parse(s.Run), ["edits"] = s.Edits, ["batches"] = s.Batches,
            ["es"] = Numbers(s.ES), ["gs"] = Numbers(s.GS), ["ls"] = Numbers(s.LS), ["kept"] = new JsonArray(s.Kept.Select(k => (JsonNode)k).ToArray()),
            ["weights"] = weights,
            ["checkpoints"] = new JsonArray(s.Checkpoints.Select(c => (JsonNode)c.ToJson()).ToArray()),
        };
        AtomicFile.WriteAllText(Path.Combine(dir, StateName), json.ToJsonString() + "\n");
        foreach (var old in Directory.GetFiles(dir, "weights-*.safetensors").Where(p => Path.GetFileName(p) != weights))
            File.Delete(old);
    }

    /// <summary>The state saved in DIR; a missing, malformed or inconsistent one is an <see cref="ArgumentException"/> naming the file and field.</summary>
    public static LifelongState Load(string dir)
    {
        string path = Path.Combine(dir, StateName);
        if (!File.Exists(path)) throw new ArgumentException($"{path}: no saved state to resume from");
        JsonObject o;
        try { o = JsonNode.Parse(File.ReadAllText(path)) as JsonObject ?? throw new ArgumentException($"{path}: expected a JSON object"); }
        catch (JsonException e) { throw new ArgumentException($"{path}: malformed JSON ({e.Message.Split('\n')[0]})"); }
        try
        {
            if ((string?)o["format"] != Format) throw new ArgumentException($"{path}: 'format' is not {Format}");
            string weights = (string?)o["weights"] ?? throw new ArgumentException($"{path}: 'weights' is missing");
            if (Path.GetFileName(weights) != weights) throw new ArgumentException($"{path}: 'weights' must name a file in the same folder");
            var down = new Dictionary<int, double[]>();
            var memory = new Dictionary<string, double[]>();
            using (var st = SafetensorsFile.Open(Path.Combine(dir, weights)))
                foreach (var name in st.Tensors.Keys)
                {
                    if (name.StartsWith("memory.", StringComparison.Ordinal)) memory[name["memory.".Length..]] = st.ReadF64(name);
                    else if (name.StartsWith("down.", StringComparison.Ordinal) && int.TryParse(name[5..], NumberStyles.None, CultureInfo.InvariantCulture, out int l))
                        down[l] = st.ReadF64(name);
                    else throw new ArgumentException($"{Path.Combine(dir, weights)}: unexpected tensor '{name}'");
                }
            var cps = Array(o, "checkpoints", path).Select(n => LifelongCheckpoint.FromJson(n as JsonObject ?? throw new ArgumentException($"{path}: 'checkpoints' holds a non-object"), path)).ToList();
            return new LifelongState(o["run"]?.ToJsonString() ?? throw new ArgumentException($"{path}: 'run' is missing"),
                Int(o, "edits", path), Int(o, "batches", path),
                Array(o, "es", path).Select(Dbl).ToArray(), Array(o, "gs", path).Select(Dbl).ToArray(), Array(o, "ls", path).Select(Dbl).ToArray(),
                cps, Array(o, "kept", path).Select(n => (int)n!).ToArray(), down, memory);
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException or ModelFormatException)
        {
            throw new ArgumentException($"{path}: {e.Message}", e);
        }
    }

    /// <summary>Removes a saved state (a finished run needs none).</summary>
    public static void Delete(string dir)
    {
        if (!Directory.Exists(dir)) return;
        File.Delete(Path.Combine(dir, StateName));
        foreach (var w in Directory.GetFiles(dir, "weights-*.safetensors")) File.Delete(w);
        if (!Directory.EnumerateFileSystemEntries(dir).Any()) Directory.Delete(dir);
    }

    private static double Dbl(JsonNode? n) => LifelongCheckpoint.Dbl(n);
    private static JsonArray Numbers(double[] xs) => new(xs.Select(LifelongCheckpoint.Num).ToArray());
    private static JsonArray Array(JsonObject o, string key, string path) => o[key] as JsonArray ?? throw new ArgumentException($"{path}: '{key}' is missing or not an array");
    private static int Int(JsonObject o, string key, string path) => o[key] is JsonValue v && v.TryGetValue<int>(out int i) ? i : throw new ArgumentException($"{path}: '{key}' is missing or not an integer");
}
