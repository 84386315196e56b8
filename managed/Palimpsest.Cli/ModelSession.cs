using Palimpsest.Backends.Cpu;
using Palimpsest.Models;
using Palimpsest.Tokenization;

namespace Palimpsest.Cli;

/// <summary>
/// One model folder as the CLI sees it: config first (cheap, and enough to validate input), then the
/// tokenizer and the weights only when a command needs them, so `info` and bad-input errors stay fast.
/// </summary>
internal sealed class ModelSession : IDisposable
{
    private ITextTokenizer? _tokenizer;
    private Engine? _engine;

    private ModelSession(string folder, ModelConfig config, bool f64, bool cuda, CpuWeights weights)
    {
        Folder = folder; Config = config; F64 = f64; Cuda = cuda; Weights = weights;
    }

    /// <summary>How the CPU backend stores the matrices (--weights).</summary>
    public CpuWeights Weights { get; }

    public string Folder { get; }
    public ModelConfig Config { get; }
    public bool F64 { get; }
    public bool Cuda { get; }

    /// <param name="device">"cpu" or "cuda" (the --device option).</param>
    /// <param name="weights">The --weights value ("auto", "bf16", "fp16", "f32").</param>
    public static ModelSession Open(string folder, bool f64 = false, string device = "cpu", string weights = "auto")
    {
        bool cuda = device == "cuda";
        if (cuda && f64) throw new CliUsageException("--f64 runs on the CPU reference backend; it cannot be combined with --device cuda");
        if (!Directory.Exists(folder))
            throw new DirectoryNotFoundException(File.Exists(folder)
                ? $"'{folder}' is a file; expected a model folder (config.json + model.safetensors)"
                : $"model folder '{folder}' not found");
        var config = ModelConfig.Load(Path.Combine(folder, "config.json"));
        return new ModelSession(folder, config, f64, cuda, CommonOptions.ParseWeights(weights));
    }

    public ITextTokenizer Tokenizer => _tokenizer ??= TokenizerFactory.ForModel(Folder, Config);

    /// <summary>The weights on the chosen backend, loaded on first use.</summary>
    public Engine Engine => _engine ??= Engine.Load(Folder, F64, Cuda, Weights);

    /// <summary>Name of config.json's context-length field for this architecture (for error messages).</summary>
    public string ContextField => Config.Arch is Architecture.Gpt2 or Architecture.GptJ ? "n_positions" : "max_position_embeddings";

    /// <summary>
    /// Token ids from exactly one of a prompt or --ids, checked against the vocabulary and context
    /// here so that the error names the option and config field rather than an engine internal.
    /// </summary>
    public int[] ResolveInput(string? prompt, string? idsText)
    {
        if (prompt is not null && idsText is not null) throw new CliUsageException("give either a prompt or --ids, not both");
        if (prompt is null && idsText is null) throw new CliUsageException("give a prompt or --ids");
        int[] ids;
        if (idsText is not null)
        {
            ids = CommonOptions.ParseIds(idsText);
            foreach (int id in ids)
                if (id >= Config.Vocab)
                    throw new CliUsageException($"--ids: token id {id} is outside the model's vocabulary [0, {Config.Vocab}) (vocab_size in {ConfigPath})");
        }
        else
        {
            if (prompt!.Length == 0) throw new CliUsageException("the prompt is empty");
            ids = Tokenizer.EncodePrompt(prompt);
            if (ids.Length == 0) throw new CliUsageException("the prompt encodes to no tokens");
        }
        CheckFitsContext(ids.Length, "");
        return ids;
    }

    public void CheckFitsContext(int tokens, string what)
    {
        if (tokens > Config.MaxPositions)
            throw new CliUsageException($"input{what} is {tokens} tokens, longer than the model's context of {Config.MaxPositions} ({ContextField} in {ConfigPath})");
    }

    public string ConfigPath => Path.Combine(Folder, "config.json");

    public void Dispose() => _engine?.Dispose();
}
