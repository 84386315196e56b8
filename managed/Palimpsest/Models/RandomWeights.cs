using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>
/// Random parameters for any config, reproducible from a seed: matrices N(0, scale²), norm gains
/// 1 + N(0, 0.2²), biases N(0, 0.1²) — the recipe of the reference fixtures, so every term matters.
/// Used by tests (finite differences on odd shapes) and benchmarks (GPT-2-small / GPT2-XL shapes
/// without committing weights). Large tensors are filled in parallel from per-chunk seeds, so the
/// values depend only on (seed, tensor name, chunk), never on thread scheduling.
/// </summary>
public static class RandomWeights
{
    public static ParamSet<HostTensor> Create(ModelConfig c, int seed, double scale = 0.08)
    {
        int d = c.DModel, f = c.DFf, q = c.QDim, kv = c.KvDim;
        HostTensor M(string name, params int[] shape) => Fill(name, seed, shape, (r) => scale * r);
        HostTensor Gain(string name, int n) => Fill(name, seed, [n], r => 1 + 0.2 * r);
        HostTensor Bias(string name, int n) => Fill(name, seed, [n], r => 0.1 * r);
        bool ln = c.Norm == NormKind.LayerNorm;
        var blocks = new BlockParams<HostTensor>[c.Layers];
        for (int i = 0; i < c.Layers; i++)
        {
            string b = $"h{i}.";
            blocks[i] = new BlockParams<HostTensor>
            {
                Ln1G = Gain(b + "ln1.g", d), Ln1B = ln ? Bias(b + "ln1.b", d) : null,
                Ln2G = c.SharedNorm ? null : Gain(b + "ln2.g", d), Ln2B = c.SharedNorm || !ln ? null : Bias(b + "ln2.b", d),
                Wq = M(b + "wq", d, q), Bq = c.QkvBias ? Bias(b + "bq", q) : null,
                Wk = M(b + "wk", d, kv), Bk = c.QkvBias ? Bias(b + "bk", kv) : null,
                Wv = M(b + "wv", d, kv), Bv = c.QkvBias ? Bias(b + "bv", kv) : null,
                Wo = M(b + "wo", q, d), Bo = c.AttnOutBias ? Bias(b + "bo", d) : null,
                WUp = M(b + "wup", d, f), BUp = c.MlpBias ? Bias(b + "bup", f) : null,
                WGate = c.GatedMlp ? M(b + "wgate", d, f) : null,
                WDown = M(b + "wdown", f, d), BDown = c.MlpBias ? Bias(b + "bdown", d) : null,
            };
        }
        var wte = M("wte", c.Vocab, d);
        return new ParamSet<HostTensor>
        {
            Wte = wte, Wpe = c.LearnedPositions ? M("wpe", c.MaxPositions, d) : null, Blocks = blocks,
            LnFG = Gain("lnf.g", d), LnFB = ln ? Bias("lnf.b", d) : null,
            Head = c.TiedHead ? wte : M("head", c.Vocab, d),
            HeadB = c.HeadBias ? Bias("head.b", c.Vocab) : null,
        };
    }

    private const int Chunk = 1 << 16;

    private static HostTensor Fill(string name, int seed, int[] shape, Func<double, double> map)
    {
        long n = 1; foreach (var s in shape) n *= s;
        var data = new float[n];
        int chunks = (int)((n + Chunk - 1) / Chunk);
        ulong baseSeed = Mix((ulong)(uint)seed << 32 | (uint)StableHash(name));
        Parallel.For(0, chunks, ci =>
        {
            var rng = new Random((int)(Mix(baseSeed + (ulong)ci) & 0x7fffffff));
            long end = Math.Min(n, (long)(ci + 1) * Chunk);
            for (long i = (long)ci * Chunk; i < end; i++) data[i] = (float)map(Gaussian(rng));
        });
        return new HostTensor(shape, data);
    }

    // SplitMix64 finaliser: a stable mix (HashCode.Combine is randomised per process).
    internal static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    // FNV-1a: a name hash that is stable across runs.
    internal static int StableHash(string s)
    {
        unchecked
        {
            int h = (int)2166136261;
            foreach (char ch in s) h = (h ^ ch) * 16777619;
            return h;
        }
    }

    internal static double Gaussian(Random r)
    {
        // Box–Muller; one value per call keeps the stream position simple.
        double u1 = 1.0 - r.NextDouble(), u2 = r.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
