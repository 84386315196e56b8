using System.Text.Json;
using BenchmarkDotNet.Attributes;
using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Runtime;

namespace Palimpsest.Bench;

/// <summary>GPT-2 small's shape (124M parameters) with random weights made here, nothing committed.</summary>
internal static class Gpt2Small
{
    public const int PromptLength = 128, DecodeTokens = 32;

    public static ModelConfig Config()
    {
        const string json = """
            { "model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257,
              "n_positions": 1024, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new" }
            """;
        using var doc = JsonDocument.Parse(json);
        return ModelConfig.Parse(doc.RootElement);
    }

    public static int[] Prompt(int vocab)
    {
        var rng = new Random(2);
        return Enumerable.Range(0, PromptLength).Select(_ => rng.Next(vocab)).ToArray();
    }

    public static Model Load() => Model.FromHost(Config(), RandomWeights.Create(Config(), seed: 1, scale: 0.02), new SimdBackend());
}

/// <summary>
/// The engine's GPT-2-small forward on <see cref="SimdBackend"/>: a 128-token prefill (logits for all
/// 128 rows, as transformers computes them, KV cache filled).
/// </summary>
[MemoryDiagnoser]
public class Gpt2PrefillBenchmarks
{
    private Model _model = null!;
    private Transformer _tf = null!;
    private KvCache _cache = null!;
    private int[] _ids = [];

    [GlobalSetup]
    public void Setup()
    {
        _model = Gpt2Small.Load();
        _tf = new Transformer(_model);
        _cache = new KvCache(_model, _model.Config.MaxPositions);
        _ids = Gpt2Small.Prompt(_model.Config.Vocab);
    }

    [GlobalCleanup]
    public void Cleanup() { _cache.Dispose(); _model.Dispose(); }

    [Benchmark]
    public void Prefill128()
    {
        _cache.Reset();
        using var r = _tf.Forward(_ids, null, _cache);
    }
}

/// <summary>
/// One-token decode steps with the KV cache: each iteration prefills 128 tokens (not timed) and
/// then times 32 single-token forwards at positions 128..159 (time reported per token).
/// </summary>
[MemoryDiagnoser]
[InvocationCount(1)]
public class Gpt2DecodeBenchmarks
{
    private Model _model = null!;
    private Transformer _tf = null!;
    private KvCache _cache = null!;
    private int[] _ids = [];

    [GlobalSetup]
    public void Setup()
    {
        _model = Gpt2Small.Load();
        _tf = new Transformer(_model);
        _cache = new KvCache(_model, _model.Config.MaxPositions);
        _ids = Gpt2Small.Prompt(_model.Config.Vocab);
    }

    [GlobalCleanup]
    public void Cleanup() { _cache.Dispose(); _model.Dispose(); }

    [IterationSetup]
    public void Prefill()
    {
        _cache.Reset();
        _tf.Forward(_ids, new ForwardOptions { LogitsFrom = -1 }, _cache).Dispose();
    }

    [Benchmark(OperationsPerInvoke = Gpt2Small.DecodeTokens)]
    public int DecodeToken()
    {
        int token = 17, sum = 0;
        for (int i = 0; i < Gpt2Small.DecodeTokens; i++)
        {
            using var r = _tf.Forward([token], null, _cache);
            sum += r.Logits.Cols;
            token = (token * 31 + 7) % _model.Config.Vocab;
        }
        return sum;
    }
}
