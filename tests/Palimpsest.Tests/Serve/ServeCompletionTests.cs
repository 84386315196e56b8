using System.Text;
using System.Text.Json;
using Xunit;

namespace Palimpsest.Tests.Serve;

/// <summary>Completions over HTTP: the streamed events carry the same text as the plain answer, then the finish reason and [DONE].</summary>
public class ServeCompletionTests
{
    [Fact]
    public async Task Streamed_pieces_add_up_to_the_plain_completion()
    {
        var cancel = TestContext.Current.CancellationToken;
        await using var f = await ServeFixture.StartAsync();
        const string body = """{"prompt":"Ivo Brennan plays the","max_tokens":8,"temperature":0,"ignore_eos":true}""";
        var (status, plain) = await f.Send(HttpMethod.Post, "/v1/completions", body);
        Assert.True(status == 200, plain.ToString());
        string text = plain.GetProperty("choices")[0].GetProperty("text").GetString()!;
        Assert.Equal(8, plain.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        using var r = await f.Http.PostAsync("/v1/completions", new StringContent(body.Replace("\"ignore_eos\":true", "\"ignore_eos\":true,\"stream\":true"), Encoding.UTF8, "application/json"), cancel);
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType?.MediaType);
        var events = (await r.Content.ReadAsStringAsync(cancel)).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.Equal("data: [DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0]).ToArray();
        Assert.True(chunks.Length > 2, $"{chunks.Length} events: the text did not arrive in pieces");
        Assert.Equal(text, string.Concat(chunks.Select(c => c.GetProperty("text").GetString())));
        Assert.Equal("length", chunks[^1].GetProperty("finish_reason").GetString());
        Assert.All(chunks[..^1], c => Assert.Equal(JsonValueKind.Null, c.GetProperty("finish_reason").ValueKind));
    }
}
