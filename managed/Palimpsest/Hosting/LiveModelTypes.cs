using Palimpsest.Backends;
using Palimpsest.Editing;

namespace Palimpsest.Hosting;

/// <summary>How a <see cref="LiveModel"/> runs.</summary>
public sealed record LiveModelOptions
{
    /// <summary>Creates the backend the weights live on (default: the float32 SIMD CPU backend).</summary>
    public Func<IBackend>? Backend { get; init; }
    /// <summary>Completions that decode at once (each on its own backend instance); more wait in a queue. Default: the processor count.
    /// A backend that cannot run siblings (CUDA: one stream) decodes one at a time.</summary>
    public int Streams { get; init; } = Environment.ProcessorCount;
    /// <summary>Threads each decoding stream's backend uses (default 1: streams run side by side).</summary>
    public int ThreadsPerStream { get; init; } = 1;
    /// <summary>Threads the edit computation uses, beside the streams (default 1).</summary>
    public int EditThreads { get; init; } = 1;
    /// <summary>Runs edits, reverts and forecasts on a thread at the lowest CPU priority (Linux: nice 19), so decoding preempts them (default true).</summary>
    public bool LowPriorityEdits { get; init; } = true;
    /// <summary>Holds an edit's computation (and a forecast's, and the start of its commit) at its next matrix product while any
    /// completion decodes, so that it runs in the gaps between completions instead of beside them: a priority orders the
    /// cores' time, but two computations on two cores still share the caches and the memory bandwidth (measured: every token
    /// ~16 % slower while an edit computed at nice 19). Costs the edit the time it is held (at most <see cref="MaxEditHold"/>).
    /// CPU only (on CUDA decoding and edits already take turns). Default true.</summary>
    public bool EditsYieldToDecoding { get; init; } = true;
    /// <summary>With <see cref="EditsYieldToDecoding"/>: the most an edit is held in all, so a steady load cannot starve it;
    /// past it the edit computes beside the traffic. Default 2 s.</summary>
    public TimeSpan MaxEditHold { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>The key-statistics corpus of methods that need C (ROME, MEMIT, AlphaEdit, WilKE): a text file, or "facts:PATH"
    /// for a CounterFact file's sentences. Default: the folder's corpus.txt when there is one.</summary>
    public string? StatsCorpus { get; init; }
    /// <summary>Where computed key statistics are cached (default: the system's temp folder).</summary>
    public string? KeyStatsCache { get; init; }
    /// <summary>Called on the decoding thread after each token with the seconds since the completion's previous token
    /// (for the first: since its prefill began) — a host's inter-token latency metric. Must be quick.</summary>
    public Action<double>? TokenInterval { get; init; }
}

/// <summary>What a completion asks for (OpenAI's fields).</summary>
public sealed record CompletionRequest
{
    public required string Prompt { get; init; }
    public int MaxTokens { get; init; } = 16;
    /// <summary>0: greedy. Otherwise tokens are sampled at this temperature (from the TopK most likely, or all).</summary>
    public double Temperature { get; init; } = 1.0;
    /// <summary>0: no top-k restriction.</summary>
    public int TopK { get; init; }
    public int Seed { get; init; }
    /// <summary>Strings that end the completion (not included in its text).</summary>
    public IReadOnlyList<string> Stop { get; init; } = [];
    /// <summary>Decode on past the end-of-sequence token (vLLM's ignore_eos): always MaxTokens tokens, e.g. for load tests.</summary>
    public bool IgnoreEos { get; init; }
}

/// <summary>A finished completion: its text, its token ids, why it ended ("stop" or "length"), and the weights version it ran on from first to last token.</summary>
public sealed record CompletionResult(string Text, int[] TokenIds, string FinishReason, long Version, int PromptTokens)
{
    /// <summary>Where an async completion's time went (null for a synchronous one).</summary>
    public CompletionTimings? Timings { get; init; }
}

/// <summary>Milliseconds of an async completion: tokenizing and waiting for a free stream, the hop onto the stream's
/// thread, decoding (prefill to last token), and the hop back to the caller's continuation.</summary>
public sealed record CompletionTimings(double QueueMs, double HandoffMs, double DecodeMs, double ResumeMs);

/// <summary>One applied edit: its journal id, the version that made it visible, the greedy answers of each rewriting prompt before and after, and where the time went.</summary>
public sealed record EditResult(long Id, long Version, string Method, int[] Layers, IReadOnlyList<EditRequest> Requests,
    IReadOnlyList<string> Before, IReadOnlyList<string> After, EditTimings Timings);

/// <summary>Milliseconds: computing the deltas (off the request path), committing them to the journal and checkpoint,
/// making the new matrices, and publishing the version (the one swap traffic feels).</summary>
public sealed record EditTimings(double ComputeMs, double CommitMs, double UploadMs, double PublishMs)
{
    /// <summary>How long the edit's computations (its deltas, the answers before and after) were held while completions decoded (<see cref="LiveModelOptions.EditsYieldToDecoding"/>); most of it is inside ComputeMs.</summary>
    public double HeldMs { get; init; }
}

/// <summary>A reverted edit: the version without it, and where the time went.</summary>
public sealed record RevertResult(long Id, long Version, EditTimings Timings);

/// <summary>The interference monitor's dry run of one request at one edited layer: how far its own MLP output moves, and the facts that move most.</summary>
public sealed record ForecastRow(int Request, string Subject, string Target, int Layer, double Own, double MaxDrift, double MeanDrift,
    IReadOnlyList<Palimpsest.Analysis.FactAtRisk> MostAtRisk);

/// <summary>An edit the host cannot make as asked (an unknown method, bad hparams, a request that does not fit): the message names the field.</summary>
public sealed class EditRejectedException(string message) : Exception(message);
