using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Bench;

/// <summary>
/// One WilKE layer scan (six ROME deltas, 40 v* steps each: random weights never stop early) on a
/// random GPT-2 of the shared fact models' shape (6 layers, d 256, 8 heads, d_ff 1024, GPT-2
/// vocabulary), with the layers one after another or all at once (each on its own backend sibling,
/// the cores split between them). The deltas are equal bit for bit either way (WilkeTests).
///   ./build.sh bench -- --filter '*WilkeScan*'
/// </summary>
[WarmupCount(1)]
[IterationCount(3)]
public class WilkeScanBenchmarks
{
    private Model _model = null!;
    private Transformer _tf = null!;
    private Wilke _wilke = null!;
    private readonly EditRequest _request = new()
    {
        Subject = "Danielle Darrieux", Prompt = "The mother tongue of {} is", TargetNew = "English", TargetTrue = "French",
    };

    /// <summary>Layers scanned at once: 1 = the sequential scan; 6 = every layer of the model.</summary>
    [Params(1, 6)]
    public int ParallelLayers { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        const string json = """
            { "model_type": "gpt2", "n_layer": 6, "n_embd": 256, "n_head": 8, "vocab_size": 50257,
              "n_positions": 128, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new" }
            """;
        using var doc = JsonDocument.Parse(json);
        var c = ModelConfig.Parse(doc.RootElement);
        _model = Model.FromHost(c, RandomWeights.Create(c, seed: 5, scale: 0.05), new SimdBackend());
        _tf = new Transformer(_model);
        var rng = new Random(7);
        // a well-conditioned C per layer (the scan's cost does not depend on its values)
        var cms = Enumerable.Range(0, c.Layers).Select(_ =>
        {
            var m = new double[c.DFf * c.DFf];
            for (int i = 0; i < c.DFf; i++) m[i * c.DFf + i] = 1 + rng.NextDouble();
            return m;
        }).ToArray();
        var hp = new RomeHparams
        {
            FactToken = "last", VNumGradSteps = 40, VLr = 0.5, VLossLayer = 5, VWeightDecay = 0.5, ClampNormFactor = 4,
            KlFactor = 0.0625, ContextTemplateLengthParams = [[5, 5]], VEarlyStopLoss = 0.05,
        };
        _wilke = new Wilke(hp, 6, TokenizerFactory.Gpt2(c), l => cms[l]) { MaxParallelLayers = ParallelLayers };
    }

    [Benchmark]
    public int Scan() => _wilke.ComputeDeltas(_tf, [_request])[0].Layer;

    [GlobalCleanup]
    public void Cleanup()
    {
        _tf.Dispose();
        _model.Dispose();
        _model.Backend.Dispose();
    }
}
