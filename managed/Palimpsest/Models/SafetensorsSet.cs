using System.Text.Json;
using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>
/// The weights of a Hugging Face model folder: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists. Reads dispatch to the file that holds the tensor.
/// </summary>
public sealed class SafetensorsSet : IDisposable
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    private readonly Dictionary<string, SafetensorsFile> _where;
    private readonly List<string> _names;

    private SafetensorsSet(string dir, IReadOnlyList<SafetensorsFile> files, Dictionary<string, SafetensorsFile> where, List<string> names)
    {
        Dir = dir;
        Files = files;
        _where = where;
        _names = names;
    }

    public string Dir { get; }
    /// <summary>The open files: one, or the shards in index order.</summary>
    public IReadOnlyList<SafetensorsFile> Files { get; }
    /// <summary>Tensor names: the file's header order, or the index's weight_map order.</summary>
    public IEnumerable<string> Names => _names;

    public static SafetensorsSet OpenFolder(string dir)
    {
        if (!Directory.Exists(dir)) throw new ModelFormatException($"{dir}: folder not found");
        // Like transformers: a single file wins over an index when both are present.
        string single = Path.Combine(dir, SingleFile);
        if (File.Exists(single))
        {
            var f = SafetensorsFile.Open(single);
            var names = f.Tensors.Keys.ToList();
            return new SafetensorsSet(dir, [f], names.ToDictionary(n => n, _ => f), names);
        }
        string index = Path.Combine(dir, IndexFile);
        if (File.Exists(index)) return OpenSharded(dir, index);
        throw new ModelFormatException($"{dir}: no {SingleFile} or {IndexFile}");
    }

    private static SafetensorsSet OpenSharded(string dir, string index)
    {
        var map = ReadWeightMap(index);
        var shards = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
        try
        {
            var where = new Dictionary<string, SafetensorsFile>(StringComparer.Ordinal);
            foreach (var (name, shard) in map)
            {
                if (!shards.TryGetValue(shard, out var f))
                {
                    string p = Path.Combine(dir, shard);
                    if (!File.Exists(p))
                        throw new ModelFormatException($"{index}: shard '{SafetensorsHeader.Q(shard)}' (holding tensor '{SafetensorsHeader.Q(name)}') not found");
                    shards[shard] = f = SafetensorsFile.Open(p);
                }
                if (!f.Contains(name))
                    throw new ModelFormatException($"{f.Path}: tensor '{SafetensorsHeader.Q(name)}' not found (listed for this shard in {index})");
                where[name] = f;
            }
            return new SafetensorsSet(dir, shards.Values.ToList(), where, map.Select(m => m.Name).ToList());
        }
        catch
        {
            foreach (var f in shards.Values) f.Dispose();
            throw;
        }
    }

    /// <summary>weight_map entries in file order; shard names must be plain file names in the folder.</summary>
    private static List<(string Name, string Shard)> ReadWeightMap(string index)
    {
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllBytes(index)); }
        catch (JsonException e) { throw new ModelFormatException($"{index}: not valid JSON ({e.Message.Split('\n')[0].TrimEnd('\r')})"); }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new ModelFormatException($"{index}: top level is not a JSON object");
            if (!root.TryGetProperty("weight_map", out var wm)) throw new ModelFormatException($"{index}: field 'weight_map' is missing");
            if (wm.ValueKind != JsonValueKind.Object) throw new ModelFormatException($"{index}: field 'weight_map' must be an object (found {wm.ValueKind})");
            var r = new List<(string, string)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in wm.EnumerateObject())
            {
                string field = $"{index}: field 'weight_map.{SafetensorsHeader.Q(p.Name)}'";
                if (!seen.Add(p.Name)) throw new ModelFormatException($"{field} appears twice");
                if (p.Value.ValueKind != JsonValueKind.String) throw new ModelFormatException($"{field} must be a string (found {p.Value.ValueKind})");
                string shard = p.Value.GetString()!;
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard is "." or "..")
                    throw new ModelFormatException($"{field}: shard '{SafetensorsHeader.Q(shard)}' is not a file name in the folder");
                r.Add((p.Name, shard));
            }
            return r;
        }
    }

    public bool Contains(string name) => _where.ContainsKey(name);

    /// <summary>The file holding a tensor.</summary>
    public SafetensorsFile FileOf(string name) =>
        _where.TryGetValue(name, out var f) ? f
            : throw new ModelFormatException($"{Dir}: tensor '{SafetensorsHeader.Q(name)}' not found");

    public SafetensorInfo Info(string name) => FileOf(name).Info(name);
    public void ReadF32(string name, Span<float> dst) => FileOf(name).ReadF32(name, dst);
    public float[] ReadF32(string name) => FileOf(name).ReadF32(name);
    public double[] ReadF64(string name) => FileOf(name).ReadF64(name);
    public long[] ReadI64(string name) => FileOf(name).ReadI64(name);
    public HostTensor ReadHost(string name) => FileOf(name).ReadHost(name);

    public void Dispose()
    {
        foreach (var f in Files) f.Dispose();
    }
}
