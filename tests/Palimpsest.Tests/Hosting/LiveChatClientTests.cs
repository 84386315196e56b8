using Microsoft.Extensions.AI;
using Palimpsest.Hosting;
using Palimpsest.Journal;
using Palimpsest.Tests.Journal;

namespace Palimpsest.Tests.Hosting;

/// <summary>One LiveModel over a temporary edited copy of the committed demo model, shared by the tests below.</summary>
public sealed class DemoLiveModel : IDisposable
{
    private readonly TempDir _tmp = JournalFixtures.NewTemp();

    public DemoLiveModel()
    {
        string dir = _tmp.Sub("facts-d128-l5");
        EditedModel.Create(Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5"), dir).Dispose();
        Model = LiveModel.Open(dir, new LiveModelOptions { Streams = 2, KeyStatsCache = _tmp.Sub("keystats") });
    }

    public LiveModel Model { get; }

    public void Dispose()
    {
        Model.Dispose();
        _tmp.Dispose();
    }
}

public class LiveChatClientTests(DemoLiveModel demo) : IClassFixture<DemoLiveModel>
{
    private const string Prompt = "Ivo Brennan plays the";
    private static readonly ChatOptions Greedy = new() { Temperature = 0, MaxOutputTokens = 8 };

    private CancellationToken Cancel => TestContext.Current.CancellationToken;

    private string Completion(int maxTokens, params string[] stop) =>
        demo.Model.Complete(new CompletionRequest { Prompt = Prompt, MaxTokens = maxTokens, Temperature = 0, Stop = stop }).Text;

    [Fact]
    public async Task A_greedy_response_is_the_models_completion_with_its_finish_reason_and_usage()
    {
        using var client = new LiveChatClient(demo.Model);
        var direct = demo.Model.Complete(new CompletionRequest { Prompt = Prompt, MaxTokens = 8, Temperature = 0 }, cancel: Cancel);

        var response = await client.GetResponseAsync(Prompt, Greedy, Cancel);

        var message = Assert.Single(response.Messages);
        Assert.Equal(ChatRole.Assistant, message.Role);
        Assert.Equal(direct.Text, response.Text);
        Assert.Equal(direct.FinishReason == "length" ? ChatFinishReason.Length : ChatFinishReason.Stop, response.FinishReason);
        Assert.Equal(direct.PromptTokens, response.Usage!.InputTokenCount);
        Assert.Equal(direct.TokenIds.Length, response.Usage.OutputTokenCount);
        Assert.Equal("facts-d128-l5", response.ModelId);
    }

    [Fact]
    public async Task Streamed_pieces_concatenate_to_the_response_text()
    {
        using var client = new LiveChatClient(demo.Model);
        string whole = (await client.GetResponseAsync(Prompt, Greedy, Cancel)).Text;

        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(Prompt, Greedy, Cancel)) updates.Add(u);

        var pieces = updates.Where(u => u.Text.Length > 0).ToList();
        Assert.True(pieces.Count > 1, $"one piece only: '{whole}'");
        Assert.Equal(whole, string.Concat(pieces.Select(u => u.Text)));
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        Assert.NotNull(updates[^1].FinishReason);
        Assert.Single(updates[^1].Contents.OfType<UsageContent>());
        // and the updates fold back into the same response
        Assert.Equal(whole, updates.ToChatResponse().Text);
    }

    [Fact]
    public async Task A_stop_sequence_cuts_the_text_and_MaxOutputTokens_bounds_the_tokens()
    {
        using var client = new LiveChatClient(demo.Model);
        string full = Completion(8);
        Assert.True(full.Length >= 4, $"too short to cut: '{full}'");
        string stop = full[(full.Length / 2)..];

        var cut = await client.GetResponseAsync(Prompt, new ChatOptions { Temperature = 0, MaxOutputTokens = 8, StopSequences = [stop] }, Cancel);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], cut.Text);
        Assert.Equal(ChatFinishReason.Stop, cut.FinishReason);

        var two = await client.GetResponseAsync(Prompt, new ChatOptions { Temperature = 0, MaxOutputTokens = 2 }, Cancel);
        Assert.True(two.Usage!.OutputTokenCount <= 2);
        Assert.Equal(Completion(2), two.Text);
        Assert.StartsWith(two.Text, full, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_map_to_the_completion_request_and_messages_render_in_order()
    {
        var r = LiveChatClient.ToRequest(
            [new ChatMessage(ChatRole.System, "Facts."), new ChatMessage(ChatRole.User, Prompt)],
            new ChatOptions { Instructions = "Answer.", MaxOutputTokens = 3, Temperature = 0.5f, TopK = 7, Seed = 42, StopSequences = ["."] });
        Assert.Equal("Answer.\nFacts.\n" + Prompt, r.Prompt);
        Assert.Equal((3, 0.5, 7, 42), (r.MaxTokens, r.Temperature, r.TopK, r.Seed));
        Assert.Equal(["."], r.Stop);

        var defaults = new CompletionRequest { Prompt = Prompt };
        Assert.Equal(defaults, LiveChatClient.ToRequest([new ChatMessage(ChatRole.User, Prompt)]) with { Stop = defaults.Stop });
    }

    [Fact]
    public void GetService_gives_the_metadata_the_model_and_the_client()
    {
        using var client = new LiveChatClient(demo.Model);
        var meta = client.GetService<ChatClientMetadata>();
        Assert.Equal(("palimpsest", "facts-d128-l5"), (meta!.ProviderName, meta.DefaultModelId));
        Assert.Same(demo.Model, client.GetService<LiveModel>());
        Assert.Same(client, client.GetService<IChatClient>());
        Assert.Null(client.GetService<ChatClientMetadata>("key"));
    }
}
