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

    public const string ConfigJson = """
        { "model_type": "gpt2", "n_layer": 12, "n_embd": 768, "n_head": 12, "vocab_size": 50257,
          "n_positions": 1024, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new" }
        """;

    public static ModelConfig Config()
    {
        using var doc = JsonDocument.Parse(ConfigJson);
        return ModelConfig.Parse(doc.RootElement);
    }

    public static int[] Prompt(int vocab)
    {
        var rng = new Random(2);
        return Enumerable.Range(0, PromptLength).Select(_ => rng.Next(vocab)).ToArray();
    }

    public static Model Load() => Model.FromHost(Config(), RandomWeights.Create(Config(), seed: 1, scale: 0.02), new SimdBackend());
}

/// <summary>A GPT-2-small model on <see cref="SimdBackend"/>, its transformer, a full-context KV cache and a prompt.</summary>
public abstract class Gpt2BenchmarkBase
{
    protected Model Model = null!;
    protected Transformer Tf = null!;
    protected KvCache Cache = null!;
    protected int[] Ids = [];

    /// <summary>The model the benchmarks run (float32 random weights; a subclass may load another).</summary>
    protected virtual Model LoadModel() => Gpt2Small.Load();

    [GlobalSetup]
    public void Setup()
    {
        Model = LoadModel();
        Tf = new Transformer(Model);
        Cache = new KvCache(Model, Model.Config.MaxPositions);
        Ids = Gpt2Small.Prompt(Model.Config.Vocab);
    }

    [GlobalCleanup]
    public void Cleanup() => Release();

    protected virtual void Release()
    {
        Cache.Dispose();
        var backend = Model.Backend;
        Model.Dispose();
        backend.Dispose();
    }
}

/// <summary>
/// The engine's GPT-2-small forward on <see cref="SimdBackend"/>: a 128-token prefill (logits for all
/// 128 rows, as transformers computes them, KV cache filled).
/// </summary>
[MemoryDiagnoser]
public class Gpt2PrefillBenchmarks : Gpt2BenchmarkBase
{
    [Benchmark]
    public void Prefill128()
    {
        Cache.Reset();
        using var r = Tf.Forward(Ids, null, Cache);
    }
}

/// <summary>
/// One-token decode steps through a <see cref="DecodeSession"/> (what a server streams from): each
/// iteration opens a session, prefills 128 tokens and takes one step (not timed: the step warms the
/// one-token scratch), then times 32 steps at positions 129..160, each a forward and a greedy pick
/// (time reported per token). A warm step allocates nothing: Allocated should read 0 B.
/// </summary>
[MemoryDiagnoser]
[InvocationCount(1)]
public class Gpt2DecodeBenchmarks : Gpt2BenchmarkBase
{
    private DecodeSession? _session;
    private int _token;

    [IterationSetup]
    public void Prefill()
    {
        _session = new DecodeSession(Tf, Gpt2Small.PromptLength + 1 + Gpt2Small.DecodeTokens);
        _token = _session.Step(_session.Prefill(Ids));
    }

    [IterationCleanup]
    public void Close()
    {
        _session?.Dispose();
        _session = null;
    }

    [Benchmark(OperationsPerInvoke = Gpt2Small.DecodeTokens)]
    public int DecodeToken()
    {
        int token = _token;
        for (int i = 0; i < Gpt2Small.DecodeTokens; i++) token = _session!.Step(token);
        return token;
    }
}

/// <summary>
/// The decode of <see cref="Gpt2DecodeBenchmarks"/> with the weight matrices kept in bfloat16 (half
/// the bytes per step): a random GPT-2-small checkpoint written as BF16 safetensors at setup (in a
/// temporary folder, deleted after) and loaded in place (SimdBackend reads the memory map and
/// widens inside its GEMV; vectors stay float32).
/// </summary>
public class Gpt2Bf16DecodeBenchmarks : Gpt2DecodeBenchmarks
{
    private string _dir = "";

    protected override Model LoadModel()
    {
        _dir = Path.Combine(Path.GetTempPath(), $"palimpsest-gpt2-bf16-{Environment.ProcessId}");
        Directory.CreateDirectory(_dir);
        RandomCheckpoint.WriteWeights(Gpt2Small.Config(), _dir, "BF16", seed: 1);
        File.WriteAllText(Path.Combine(_dir, "config.json"), Gpt2Small.ConfigJson);
        return Model.Load(_dir, new SimdBackend());
    }

    protected override void Release()
    {
        base.Release();
        Directory.Delete(_dir, recursive: true);
    }
}
