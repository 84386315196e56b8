using Palimpsest.Editing;
using Palimpsest.Journal;
using Palimpsest.Models;

namespace Palimpsest.Tests.Journal;

/// <summary>Throw-away folders, the fp16 copy of the gpt2 fixture, and seeded random deltas.</summary>
internal static class JournalFixtures
{
    /// <summary>The tiny gpt2 fixture: 4 layers, d = 64, f = 256, float32.</summary>
    public static string Gpt2F32 => Paths.Fixture("gpt2");

    /// <summary>A fresh empty folder under the temp dir (deleted by <see cref="TempDir.Dispose"/>).</summary>
    public static TempDir NewTemp() => new();

    /// <summary>The gpt2 fixture converted to F16 (every tensor) with SafetensorsWriter, in <paramref name="dir"/>.</summary>
    public static string MakeF16(string dir) => Convert(dir, "F16");

    /// <summary>The gpt2 fixture with every tensor converted to <paramref name="dtype"/> (F64, F16, BF16), in <paramref name="dir"/>.</summary>
    public static string Convert(string dir, string dtype)
    {
        Directory.CreateDirectory(dir);
        File.Copy(Path.Combine(Gpt2F32, "config.json"), Path.Combine(dir, "config.json"));
        using var f = SafetensorsFile.Open(Path.Combine(Gpt2F32, "model.safetensors"));
        var tensors = f.Tensors.Values.OrderBy(t => t.Begin).Select(t => (t.Name, f.ReadHost(t.Name), dtype)).ToList();
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        return dir;
    }

    /// <summary>A random low-rank delta for the fixture (f = 256, d = 64); same seed, same bits.
    /// |ΔW| elements ~ 1e-2, about the size of the fixture's weights, so every edit is visible in fp16.</summary>
    public static WeightDelta RandomDelta(int seed, int? layer = null, int layers = 4, int f = 256, int d = 64)
    {
        var rng = new Random(seed);
        int l0 = rng.Next(layers), rank = 1 + rng.Next(3);
        double[] l = new double[rank * f], r = new double[rank * d];
        for (int i = 0; i < l.Length; i++) l[i] = 0.3 * Gauss(rng);
        for (int i = 0; i < r.Length; i++) r[i] = 0.05 * Gauss(rng);
        return new WeightDelta(layer ?? l0, rank, l, r);
    }

    private static double Gauss(Random rng) =>
        Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble());

    /// <summary>The edit record the tests and the child process use for seed <paramref name="seed"/>.</summary>
    public static EditRecord Record(int seed) => new()
    {
        Method = "random",
        Requests = [new EditRequest { Subject = $"Subject {seed}", Prompt = "{} speaks", TargetNew = $" Lang{seed}", CaseId = $"seed-{seed}" }],
        HyperParametersJson = $$"""{"seed": {{seed}}}""",
    };

    /// <summary>Every tensor of a checkpoint as raw bytes, by name.</summary>
    public static Dictionary<string, byte[]> RawTensors(string checkpoint) =>
        RawCheckpoint.ReadFile(checkpoint).Tensors.ToDictionary(t => t.Name, t => t.Data);

    /// <summary>Names of the tensors whose bytes differ (or that exist in only one), empty when bit-identical.</summary>
    public static List<string> Differences(Dictionary<string, byte[]> a, Dictionary<string, byte[]> b) =>
        a.Keys.Union(b.Keys).Where(n => !a.TryGetValue(n, out var x) || !b.TryGetValue(n, out var y) || !x.AsSpan().SequenceEqual(y)).Order().ToList();
}

/// <summary>A temp folder removed on dispose.</summary>
internal sealed class TempDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "palimpsest-journal-" + Guid.NewGuid().ToString("N")[..12]);

    public TempDir() => Directory.CreateDirectory(Path);

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { /* best effort: a killed child may still be exiting */ }
    }
}
