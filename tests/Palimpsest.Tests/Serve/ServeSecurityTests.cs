using System.Text.Json;
using Palimpsest.Cli.Serve;
using Palimpsest.Tests.Cli;
using Xunit;

namespace Palimpsest.Tests.Serve;

/// <summary>Write endpoints need the token; bad input of every kind is a 4xx naming the field, with one log line; never a 500.</summary>
public class ServeSecurityTests
{
    private const string Edit = """{"subject":"Ivo Brennan","prompt":"{} plays the","target_new":"flute"}""";

    [Theory]
    [InlineData("POST", "/v1/edits", Edit)]
    [InlineData("DELETE", "/v1/edits/1", null)]
    [InlineData("POST", "/v1/edits/forecast", Edit)]
    public async Task Write_endpoints_refuse_a_missing_or_wrong_token(string method, string path, string? body)
    {
        await using var f = await ServeFixture.StartAsync();
        foreach (var token in new[] { null, "wrong-token-0123456789abcdef", ServeFixture.Token + "x", "" })
        {
            var (status, json) = await f.Send(new HttpMethod(method), path, body, token);
            Assert.True(status == 401, $"{method} {path} with token '{token}': {status} {json}");
            Assert.Equal("authentication_error", json.GetProperty("error").GetProperty("type").GetString());
        }
        Assert.Equal(0, f.Live.Version); // nothing was applied
        Assert.Empty(f.Live.Journal());
        Assert.Equal(4, f.LogLines().Count(l => l.Contains("401", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_server_without_a_token_refuses_every_write()
    {
        await using var f = await ServeFixture.StartAsync(token: null);
        var (status, json) = await f.Send(HttpMethod.Post, "/v1/edits", Edit, "anything-at-all-0123456789");
        Assert.Equal(401, status);
        Assert.Contains("without a write token", json.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task A_non_loopback_bind_without_a_token_does_not_start()
    {
        var e = await Assert.ThrowsAsync<ArgumentException>(() => ServeHost.StartAsync(new ServeSettings { Host = "0.0.0.0", Port = 0 }, null!, null!, TextWriter.Null));
        Assert.Contains("write token", e.Message);
        var r = CliRunner.Run("serve", ServeFixture.Model, "--host", "0.0.0.0", "--port", "0", "--out", Path.Combine(Path.GetTempPath(), "never-created-" + Guid.NewGuid().ToString("N")));
        CliRunner.AssertBadInput(r, "--host 0.0.0.0", "write token");
    }

    [Fact]
    public void A_bad_warm_method_is_one_line_before_the_server_starts()
    {
        using var tmp = Palimpsest.Tests.Journal.JournalFixtures.NewTemp();
        var r = CliRunner.Run("serve", ServeFixture.Model, "--out", tmp.Sub("served"), "--port", "0", "--warm", "romee");
        CliRunner.AssertBadInput(r, "--warm romee", "not an editing method");
        Assert.DoesNotContain("serving", r.Out);
    }

    public static TheoryData<string, string, string?, bool, int, string> BadInputs() => new()
    {
        { "POST", "/v1/completions", """{"prompt": """, false, 400, "body" },
        { "POST", "/v1/completions", """[1, 2]""", false, 400, "body" },
        { "POST", "/v1/completions", """{"prompt":"Ivo Brennan plays the","max_tokens":4,"temprature":0}""", false, 400, "temprature" },
        { "POST", "/v1/completions", """{"max_tokens":4}""", false, 400, "prompt" },
        { "POST", "/v1/completions", """{"prompt":7}""", false, 400, "prompt" },
        { "POST", "/v1/completions", """{"prompt":"x","max_tokens":100000}""", false, 400, "max_tokens" },
        { "POST", "/v1/completions", """{"prompt":"x","max_tokens":0}""", false, 400, "max_tokens" },
        { "POST", "/v1/completions", """{"prompt":"x","temperature":-1}""", false, 400, "temperature" },
        { "POST", "/v1/completions", """{"prompt":"x","stop":[1]}""", false, 400, "stop" },
        { "POST", "/v1/completions", "{\"prompt\":\"" + string.Concat(Enumerable.Repeat("word ", 2000)) + "\"}", false, 400, "prompt" },
        { "POST", "/v1/completions", "{\"prompt\":\"" + string.Concat(Enumerable.Repeat("word ", 140)) + "\"}", false, 400, "prompt" },
        { "POST", "/v1/completions", """{"prompt":"Ivo Brennan plays the","max_tokens":125}""", false, 400, "max_tokens" },
        { "POST", "/v1/completions", """{"prompt":"x","model":"gpt-4"}""", false, 404, "model" },
        { "POST", "/v1/completions", "{\"prompt\":\"" + new string('a', 70_000) + "\"}", false, 413, "body" },
        { "POST", "/v1/edits", """{"subject":"Ivo Brennan","prompt":"{} plays the"}""", true, 400, "target_new" },
        { "POST", "/v1/edits", """{"subject":"Ivo Brennan","prompt":"plays the","target_new":"flute"}""", true, 400, "prompt" },
        { "POST", "/v1/edits", """{"subject":"Ivo Brennan","prompt":"{} plays the","target_new":"flute","method":"romee"}""", true, 400, "method" },
        { "POST", "/v1/edits", """{"subject":"Ivo Brennan","prompt":"{} plays the","target_new":"flute","hparams":{"layers":[9]}}""", true, 400, "hparams" },
        { "POST", "/v1/edits", """{"requests":[{"subject":"A","prompt":"{} is","target_new":"b","colour":1}]}""", true, 400, "requests[0].colour" },
        { "POST", "/v1/edits", "{\"requests\":[" + string.Join(",", Enumerable.Repeat("""{"subject":"A","prompt":"{} is","target_new":"b"}""", 65)) + "]}", true, 400, "requests" },
        { "POST", "/v1/edits", """{"requests":[{"subject":"A","prompt":"{} is","target_new":"b"},{"subject":"B","prompt":"{} is","target_new":"c"}]}""", true, 400, "requests" },
        { "DELETE", "/v1/edits/abc", null, true, 400, "id" },
        { "DELETE", "/v1/edits/99", null, true, 404, "id" },
        { "GET", "/v1/nothing", null, false, 404, "" },
    };

    [Theory]
    [MemberData(nameof(BadInputs))]
    public async Task Bad_input_gets_a_4xx_naming_the_field_and_one_log_line(string method, string path, string? body, bool auth, int expected, string param)
    {
        await using var f = await ServeFixture.StartAsync();
        var (status, json) = await f.Send(new HttpMethod(method), path, body, auth ? ServeFixture.Token : null);
        Assert.True(status == expected, $"{method} {path}: expected {expected}, got {status} {json}");
        var error = json.GetProperty("error");
        string message = error.GetProperty("message").GetString()!;
        if (param.Length > 0)
        {
            Assert.True(error.GetProperty("param").ValueKind == JsonValueKind.String && error.GetProperty("param").GetString() == param,
                $"param: expected '{param}', got {error.GetProperty("param")} ({message})");
            Assert.StartsWith(param, message);
        }
        Assert.DoesNotContain("Exception", message);
        Assert.DoesNotContain("\n", message); // one line, no stack trace
        var lines = f.LogLines();
        Assert.True(lines.Length == 1, $"log: {string.Join(" | ", lines)}");
        Assert.StartsWith($"serve: {expected} {method} ", lines[0]);
        Assert.Empty(f.Live.Journal());
    }

    [Fact]
    public async Task Reverting_twice_is_a_conflict()
    {
        await using var f = await ServeFixture.StartAsync();
        var (status, edit) = await f.Send(HttpMethod.Post, "/v1/edits", Edit, ServeFixture.Token);
        Assert.True(status == 200, edit.ToString());
        long id = edit.GetProperty("id").GetInt64();
        Assert.Equal(200, (await f.Send(HttpMethod.Delete, $"/v1/edits/{id}", null, ServeFixture.Token)).Status);
        var (again, json) = await f.Send(HttpMethod.Delete, $"/v1/edits/{id}", null, ServeFixture.Token);
        Assert.True(again == 409, json.ToString());
        Assert.Contains("already reverted", json.GetProperty("error").GetProperty("message").GetString());
    }
}
