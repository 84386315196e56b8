using System.Text.Json;
using Palimpsest.Backends.Cuda;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.GpuBench;

/// <summary>
/// A GPT-2-shaped model with random weights made on the device: host tensors of zeros (one array
/// per distinct shape, shared by every layer, so the host holds megabytes, not 6 GB) are
/// uploaded through the normal Model.FromHost path and then overwritten in place by FillUniform.
/// </summary>
public static class Gpt2Xl
{
    public static ModelConfig Config(int layers = 48, int d = 1600, int heads = 25, int vocab = 50257, int positions = 1024)
    {
        var json = $$"""
            {"model_type": "gpt2", "n_layer": {{layers}}, "n_embd": {{d}}, "n_head": {{heads}}, "vocab_size": {{vocab}},
             "n_positions": {{positions}}, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}
            """;
        using var doc = JsonDocument.Parse(json);
        return ModelConfig.Parse(doc.RootElement, "gpt2-xl (synthetic)");
    }

    public static Model Create(ModelConfig c, CudaBackend backend, ulong seed = 1234)
    {
        var zeros = new Dictionary<string, HostTensor>();
        HostTensor Z(params int[] shape)
        {
            var key = string.Join("x", shape);
            if (!zeros.TryGetValue(key, out var t))
            {
                long n = 1; foreach (var s in shape) n *= s;
                zeros[key] = t = new HostTensor(shape, new float[n]);
            }
            return t;
        }
        int d = c.DModel, f = c.DFf;
        var host = new ParamSet<HostTensor>
        {
            Wte = Z(c.Vocab, d), Wpe = Z(c.MaxPositions, d),
            Blocks = Enumerable.Range(0, c.Layers).Select(_ => new BlockParams<HostTensor>
            {
                Ln1G = Z(d), Ln1B = Z(d), Ln2G = Z(d), Ln2B = Z(d),
                Wq = Z(d, d), Bq = Z(d), Wk = Z(d, d), Bk = Z(d), Wv = Z(d, d), Bv = Z(d),
                Wo = Z(d, d), Bo = Z(d), WUp = Z(d, f), BUp = Z(f), WDown = Z(f, d), BDown = Z(d),
            }).ToArray(),
            LnFG = Z(d), LnFB = Z(d),
            Head = null!, // tied below
        };
        host.Head = host.Wte;
        var model = Model.FromHost(c, host, backend);
        ulong s = seed;
        foreach (var (name, t) in model.Params.Named())
        {
            bool gain = name.EndsWith(".g");
            if (t.Rank == 2) backend.FillUniform(t, s++, 0.035f);        // ~ N(0, 0.02) in spread
            else if (gain) backend.FillUniform(t, s++, 0.1f, 1.0f);      // norm gains near 1
            else backend.FillUniform(t, s++, 0.02f);                     // biases
        }
        backend.Synchronize();
        return model;
    }
}
