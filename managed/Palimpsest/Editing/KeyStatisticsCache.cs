using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using Palimpsest.Editing.Data;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Editing;

/// <summary>
/// Key statistics cached on disk, one safetensors file per layer (tensor "mom2" F64 [f, f]), keyed by
/// a SHA-256 of everything the keys at layer l depend on — the embeddings, blocks below l, block l
/// up to its activation (not its down-projection, which ROME/MEMIT edit and which does not change
/// its own keys) — plus the layer, the corpus ids and the token count. An edit below l, another
/// corpus or another tokenizer therefore misses the cache. Files are written atomically.
/// </summary>
public static class KeyStatisticsCache
{
    private const string TensorName = "mom2";
    private const string Version = "palimpsest-keystats-v1";

    /// <summary>
    /// The statistics of each layer: read from <paramref name="cacheDir"/> where present, the rest
    /// computed in one pass over the corpus and written there. A cache that cannot be written (a
    /// full disk, no permission) does not lose the computed statistics: they are returned uncached
    /// and <paramref name="warn"/> is told why, in one line. <paramref name="phases"/> gets the time of
    /// "cache key" (hashing the weights the keys depend on), "cache read", "compute" and "cache write".
    /// </summary>
    public static IReadOnlyDictionary<int, KeyStatistics> GetOrCompute(Transformer model, Corpus corpus, IReadOnlyList<int> layers,
        string cacheDir, long? maxTokens = null, IProgress<double>? progress = null, CancellationToken cancel = default, Action<string>? warn = null,
        PhaseTimes? phases = null)
    {
        long tokens = Math.Min(maxTokens ?? long.MaxValue, corpus.TokenCount);
        var result = new Dictionary<int, KeyStatistics>();
        var missing = new List<int>();
        var paths = new Dictionary<int, (string Path, string Key)>();
        foreach (int l in layers.Distinct())
        {
            string key = PhaseTimes.Time(phases, "cache key", () => Key(model, corpus, l, tokens));
            string path = PathFor(cacheDir, l, key);
            paths[l] = (path, key);
            var hit = PhaseTimes.Time(phases, "cache read", () => TryRead(path, key, l));
            if (hit is not null) result[l] = hit;
            else missing.Add(l);
        }
        if (missing.Count == 0) { progress?.Report(1.0); return result; }

        var computed = PhaseTimes.Time(phases, "compute", () => KeyStatistics.Compute(model, corpus, missing, maxTokens, progress, cancel));
        string? failed = null;
        foreach (var (l, s) in computed)
        {
            result[l] = s;
            if (failed is not null) continue;
            try
            {
                PhaseTimes.Time(phases, "cache write", () =>
                {
                    Directory.CreateDirectory(cacheDir);
                    Write(paths[l].Path, paths[l].Key, s, corpus.Name);
                });
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                failed = e is UnauthorizedAccessException ? "no permission to write there" : e.Message.Split('\n')[0];
            }
        }
        if (failed is not null)
            warn?.Invoke($"the key statistics were computed but not cached in {cacheDir} ({failed}); they will be computed again next time (give another --cache)");
        return result;
    }

    /// <summary>"{cacheDir}/keystats-l{layer}-{first 16 hex of key}.safetensors".</summary>
    public static string PathFor(string cacheDir, int layer, string key) =>
        Path.Combine(cacheDir, $"keystats-l{layer}-{key[..16]}.safetensors");

    /// <summary>Hex SHA-256 identifying the statistics of <paramref name="layer"/> for this model state, corpus and token count.</summary>
    public static string Key(Transformer model, Corpus corpus, int layer, long tokens)
    {
        var m = model.Model;
        if (layer < 0 || layer >= m.Config.Layers) throw new ArgumentException($"layer {layer} outside [0, {m.Config.Layers})");
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        AppendText(h, $"{Version}|layer {layer}|tokens {tokens}|corpus ");
        h.AppendData(corpus.Hash());
        double[] buf = [];
        foreach (var (name, t) in KeyInputs(m.Params, layer))
        {
            AppendText(h, $"|{name}[{string.Join(",", t.Shape)}]");
            if (buf.Length != t.Length) buf = new double[t.Length];
            m.Backend.ToHost(t, buf);
            h.AppendData(MemoryMarshal.AsBytes(buf.AsSpan()));
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    // The parameters the keys of `layer` are a function of (the tied head is not one of them).
    private static IEnumerable<(string Name, Tensor Value)> KeyInputs(ParamSet<Tensor> p, int layer)
    {
        yield return ("wte", p.Wte);
        if (p.Wpe is not null) yield return ("wpe", p.Wpe);
        for (int i = 0; i <= layer; i++)
            foreach (var (n, v) in p.Blocks[i].Named())
                if (i < layer || (n != "wdown" && n != "bdown")) yield return ($"h{i}.{n}", v);
    }

    private static KeyStatistics? TryRead(string path, string key, int layer)
    {
        if (!File.Exists(path)) return null;
        try
        {
            using var f = SafetensorsFile.Open(path);
            if (!f.Metadata.TryGetValue("key", out var k) || k != key) return null;
            var info = f.Info(TensorName);
            if (info.Shape.Length != 2 || info.Shape[0] != info.Shape[1]) return null;
            long tokens = long.Parse(f.Metadata["tokens"], CultureInfo.InvariantCulture);
            return new KeyStatistics(layer, info.Shape[0], tokens, f.ReadF64(TensorName));
        }
        catch (Exception e) when (e is ModelFormatException or IOException or KeyNotFoundException or FormatException or ArgumentException)
        {
            return null; // a damaged cache file is recomputed and replaced, never trusted
        }
    }

    private static void Write(string path, string key, KeyStatistics s, string corpusName)
    {
        var meta = new Dictionary<string, string>
        {
            ["key"] = key,
            ["layer"] = s.Layer.ToString(CultureInfo.InvariantCulture),
            ["tokens"] = s.TokenCount.ToString(CultureInfo.InvariantCulture),
            ["corpus"] = corpusName,
            ["what"] = "E[k k^T] of the MLP keys (uncentred, float64)",
        };
        SafetensorsWriter.Write(path, [(TensorName, new HostTensor([s.Dim, s.Dim], s.Matrix), "F64")], meta);
    }

    private static void AppendText(IncrementalHash h, string s) => h.AppendData(Encoding.UTF8.GetBytes(s));
}
