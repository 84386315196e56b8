using System.Runtime.InteropServices;
using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>
/// Writes a Hugging Face folder with random weights for a config.json: every tensor the engine
/// reads for that architecture, under its Hugging Face name and stored shape ([out, in] for
/// nn.Linear), in one dtype — the 8B-shaped and GPT2-XL-shaped models of the benchmarks without
/// downloading weights. Streams: a tensor is generated and written in blocks of 1M values, so
/// memory stays a few MB whatever the size (Llama-3-8B shapes in bf16: 16 GB on disk). The
/// recipe is <see cref="RandomWeights"/>': matrices N(0, scale²), norm gains 1 + N(0, 0.2²),
/// biases N(0, 0.1²), reproducible from the seed (values depend on (seed, name, block) only).
/// </summary>
public static class RandomCheckpoint
{
    private const int Block = 1 << 20;

    /// <summary>The tensors (Hugging Face name, stored shape) a checkpoint of <paramref name="c"/> holds, in reading order.</summary>
    public static IReadOnlyList<(string Name, int[] Shape)> Tensors(ModelConfig c)
    {
        var schema = new Schema();
        Architectures.Read(c, schema);
        return schema.Seen;
    }

    /// <summary>
    /// Writes <paramref name="dir"/>/config.json (a copy of <paramref name="configPath"/>) and
    /// <paramref name="dir"/>/model.safetensors in <paramref name="dtype"/> (F32, F16 or BF16).
    /// </summary>
    public static void Write(string configPath, string dir, string dtype, int seed, double scale = 0.02)
    {
        if (dtype is not ("F32" or "F16" or "BF16")) throw new ArgumentException($"dtype {dtype}: a random checkpoint is F32, F16 or BF16");
        var c = ModelConfig.Load(configPath);
        Directory.CreateDirectory(dir);
        WriteWeights(c, dir, dtype, seed, scale);
        File.Copy(configPath, Path.Combine(dir, "config.json"), overwrite: true);
    }

    /// <summary>Only <paramref name="dir"/>/model.safetensors for <paramref name="c"/> (see <see cref="Write"/>).</summary>
    public static void WriteWeights(ModelConfig c, string dir, string dtype, int seed, double scale = 0.02)
    {
        if (dtype is not ("F32" or "F16" or "BF16")) throw new ArgumentException($"dtype {dtype}: a random checkpoint is F32, F16 or BF16");
        var tensors = Tensors(c).Select(t => (t.Name, dtype, t.Shape, (Action<Stream>)(s => WriteTensor(s, t.Name, t.Shape, dtype, seed, scale)))).ToList();
        SafetensorsWriter.Write(Path.Combine(dir, SafetensorsSet.SingleFile), tensors);
    }

    // name [shape] random in dtype, Block values at a time; each 64K run of values from its own seed (parallel, reproducible)
    private static void WriteTensor(Stream s, string name, int[] shape, string dtype, int seed, double scale)
    {
        long n = 1; foreach (var d in shape) n *= d;
        Func<double, double> map = shape.Length == 2 ? r => scale * r : name.EndsWith(".bias", StringComparison.Ordinal) ? r => 0.1 * r : r => 1 + 0.2 * r;
        ulong baseSeed = RandomWeights.Mix((ulong)(uint)seed << 32 | (uint)RandomWeights.StableHash(name));
        var f = new float[Block];
        var bytes = new byte[Block * (dtype == "F32" ? 4 : 2)];
        for (long start = 0; start < n; start += Block)
        {
            int m = (int)Math.Min(Block, n - start);
            const int Run = 1 << 16;
            Parallel.For(0, (m + Run - 1) / Run, ri =>
            {
                var rng = new Random((int)(RandomWeights.Mix(baseSeed + (ulong)((start + (long)ri * Run) / Run)) & 0x7fffffff));
                int end = Math.Min(m, (ri + 1) * Run);
                for (int i = ri * Run; i < end; i++) f[i] = (float)map(RandomWeights.Gaussian(rng));
            });
            var src = f.AsSpan(0, m);
            int len = m * (dtype == "F32" ? 4 : 2);
            if (dtype == "F32") MemoryMarshal.AsBytes(src).CopyTo(bytes);
            else if (dtype == "BF16") HalfConvert.F32ToBF16(src, MemoryMarshal.Cast<byte, ushort>(bytes.AsSpan(0, len)));
            else HalfConvert.F32ToF16(src, MemoryMarshal.Cast<byte, Half>(bytes.AsSpan(0, len)));
            s.Write(bytes, 0, len);
        }
    }

    /// <summary>Records each tensor the tensor map reads, with the shape config.json implies; reshapes of it are ignored.</summary>
    private sealed class Schema : ITensorSchema<string>
    {
        public readonly List<(string Name, int[] Shape)> Seen = [];
        public string Location => "random checkpoint";
        // a checkpoint as transformers saves it: GPT2LMHeadModel's "transformer." names, no optional lm_head bias
        public bool Contains(string name) => name != "lm_head.bias";
        public int[] ShapeOf(string name) => Seen.First(t => t.Name == name).Shape;
        public string Read(string name) => name;
        public string Expect(string name, int[] shape)
        {
            if (!Seen.Any(t => t.Name == name)) Seen.Add((name, (int[])shape.Clone()));
            return name;
        }
        public string Transpose(string x) => x;
        public string Cols(string x, int start, int n) => x;
        public string Rows(string x, int[] idx) => x;
    }
}
