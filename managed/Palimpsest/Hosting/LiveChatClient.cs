using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;

namespace Palimpsest.Hosting;

/// <summary>
/// Microsoft.Extensions.AI's <see cref="IChatClient"/> over a <see cref="LiveModel"/>: edits made on the model
/// are visible to the next response. The models are plain causal language models with no chat template, so
/// the conversation is rendered as text: <see cref="ChatOptions.Instructions"/> (when set) and then each
/// message's text, in order, joined with "\n" (roles are not written; messages without text are left out);
/// the model continues that text, so the last message is the prompt it completes.
/// <para>ChatOptions map to <see cref="CompletionRequest"/>: MaxOutputTokens to MaxTokens, Temperature (0: greedy),
/// TopK, Seed (its low 32 bits) and StopSequences to Stop; an option left unset keeps CompletionRequest's default.
/// Other options (tools, response formats, ModelId) are ignored: the client serves the one model it was given.</para>
/// </summary>
public sealed class LiveChatClient : IChatClient
{
    private readonly LiveModel _model;
    private readonly bool _ownsModel;
    private readonly ChatClientMetadata _metadata;

    /// <summary>A client over <paramref name="model"/>; <paramref name="ownsModel"/>: disposing the client disposes the model.</summary>
    public LiveChatClient(LiveModel model, bool ownsModel = false)
    {
        _model = model ?? throw new ArgumentNullException(nameof(model));
        _ownsModel = ownsModel;
        _metadata = new ChatClientMetadata("palimpsest", defaultModelId: Path.GetFileName(Path.TrimEndingDirectorySeparator(model.Dir)));
    }

    /// <summary>The model id the responses carry: the served folder's name.</summary>
    public string ModelId => _metadata.DefaultModelId!;

    /// <summary>The prompt a conversation is rendered to (see the class's summary).</summary>
    public static string Render(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(messages);
        IEnumerable<string> parts = messages.Select(m => m.Text);
        if (!string.IsNullOrEmpty(options?.Instructions)) parts = parts.Prepend(options.Instructions);
        return string.Join("\n", parts.Where(p => !string.IsNullOrEmpty(p)));
    }

    /// <summary>The completion a conversation and its options ask for (see the class's summary).</summary>
    public static CompletionRequest ToRequest(IEnumerable<ChatMessage> messages, ChatOptions? options = null)
    {
        var request = new CompletionRequest { Prompt = Render(messages, options) };
        if (options is null) return request;
        return request with
        {
            MaxTokens = options.MaxOutputTokens ?? request.MaxTokens,
            Temperature = options.Temperature ?? request.Temperature,
            TopK = options.TopK ?? request.TopK,
            Seed = options.Seed is long seed ? unchecked((int)seed) : request.Seed,
            Stop = options.StopSequences is { } stop ? [.. stop] : request.Stop,
        };
    }

    /// <inheritdoc />
    public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
    {
        var request = ToRequest(messages, options);
        var r = await _model.CompleteAsync(request, null, cancellationToken).ConfigureAwait(false);
        return new ChatResponse(new ChatMessage(ChatRole.Assistant, r.Text) { MessageId = NewId() })
        {
            ResponseId = NewId(),
            ModelId = ModelId,
            CreatedAt = DateTimeOffset.UtcNow,
            FinishReason = Finish(r),
            Usage = Usage(r),
            RawRepresentation = r,
        };
    }

    /// <summary>
    /// One update per piece of text as the model makes it (LiveModel's onText, carried over a channel), then a last
    /// update with no text that carries the finish reason and the usage. Leaving the enumeration early cancels the completion.
    /// </summary>
    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var request = ToRequest(messages, options);
        string responseId = NewId(), messageId = NewId();
        var created = DateTimeOffset.UtcNow;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var (pieces, completion) = _model.CompleteStreaming(request, stop.Token);
        try
        {
            await foreach (string piece in pieces.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                yield return Update(new ChatResponseUpdate(ChatRole.Assistant, piece));
            var r = await completion.ConfigureAwait(false);
            yield return Update(new ChatResponseUpdate(ChatRole.Assistant, [new UsageContent(Usage(r))]) { FinishReason = Finish(r), RawRepresentation = r });
        }
        finally
        {
            // the consumer stopped early or the completion failed: end the completion before the token source goes
            await stop.CancelAsync().ConfigureAwait(false);
            await ((Task)completion).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        ChatResponseUpdate Update(ChatResponseUpdate u)
        {
            u.ResponseId = responseId;
            u.MessageId = messageId;
            u.ModelId = ModelId;
            u.CreatedAt = created;
            return u;
        }
    }

    private static ChatFinishReason Finish(CompletionResult r) => r.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop;

    private static UsageDetails Usage(CompletionResult r) =>
        new() { InputTokenCount = r.PromptTokens, OutputTokenCount = r.TokenIds.Length, TotalTokenCount = r.PromptTokens + r.TokenIds.Length };

    private static string NewId() => Guid.NewGuid().ToString("N");

    /// <summary>The <see cref="ChatClientMetadata"/> (provider "palimpsest", model id the folder's name), the <see cref="LiveModel"/>, or this client.</summary>
    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(LiveModel)) return _model;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Disposes the model when the client owns it.</summary>
    public void Dispose()
    {
        if (_ownsModel) _model.Dispose();
    }
}
