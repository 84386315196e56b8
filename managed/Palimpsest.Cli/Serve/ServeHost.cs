using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Palimpsest.Editing;
using Palimpsest.Hosting;
using Prometheus;

namespace Palimpsest.Cli.Serve;

/// <summary>What `serve` was told: where to listen, the write token, the bounds on what a request may ask.</summary>
internal sealed record ServeSettings
{
    public string Host { get; init; } = "127.0.0.1";
    public int Port { get; init; } = 8080;
    /// <summary>The bearer token of the write endpoints; null: they refuse every request.</summary>
    public string? Token { get; init; }
    public string ModelId { get; init; } = "model";
    public long MaxBodyBytes { get; init; } = 64 * 1024;
    public int MaxPromptChars { get; init; } = 8192;
    public int MaxTokens { get; init; } = 512;
    public int MaxBatch { get; init; } = 64;
    public int MaxStops { get; init; } = 4;

    /// <summary>The address to listen on; ArgumentException for one that is not an IP address, or beyond loopback without a token.</summary>
    public IPAddress BindAddress()
    {
        if (!IPAddress.TryParse(Host, out var address))
            throw new ArgumentException($"--host '{Host}': expected an IP address (127.0.0.1, ::1, 0.0.0.0)");
        if (!IPAddress.IsLoopback(address) && Token is null)
            throw new ArgumentException($"--host {Host}: a server reachable beyond this machine needs a write token (--token-file FILE or PALIMPSEST_TOKEN)");
        return address;
    }
}

/// <summary>
/// The HTTP face of a <see cref="LiveModel"/> on Kestrel (minimal APIs): OpenAI-shaped completions
/// (server-sent events with stream: true), edits, the journal, reverts, the interference forecast,
/// Prometheus metrics and a small page. Every refused request gets a 4xx with an OpenAI-style error
/// body naming the field and one line in the log; nothing a client sends produces a 500.
/// </summary>
internal sealed class ServeHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly TextWriter _log;

    private ServeHost(WebApplication app, TextWriter log, string url) { _app = app; _log = log; Url = url; }

    /// <summary>Where it listens, e.g. http://127.0.0.1:8080 (the real port when 0 was asked).</summary>
    public string Url { get; }

    /// <summary>Starts listening. A non-loopback address without a token is refused (ArgumentException).</summary>
    public static async Task<ServeHost> StartAsync(ServeSettings s, LiveModel live, ServeMetrics metrics, TextWriter log)
    {
        var address = s.BindAddress();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders(); // the server's own one-line log only
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(address, s.Port);
            k.Limits.MaxRequestBodySize = s.MaxBodyBytes;
            k.AddServerHeader = false;
        });
        var app = builder.Build();
        var api = new Endpoints(s, live, metrics, log);
        api.Map(app);
        await app.StartAsync().ConfigureAwait(false);
        string url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new ServeHost(app, log, url);
    }

    public Task WaitForShutdownAsync(CancellationToken cancel) => _app.WaitForShutdownAsync(cancel);

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
        await _log.FlushAsync().ConfigureAwait(false);
    }

    private sealed class Endpoints(ServeSettings s, LiveModel live, ServeMetrics metrics, TextWriter log)
    {
        private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
        private readonly byte[] _tokenHash = s.Token is null ? [] : SHA256.HashData(Encoding.UTF8.GetBytes(s.Token));
        private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

        public void Map(WebApplication app)
        {
            app.Use(Guard);
            app.MapGet("/", () => Results.Content(ServePage.Html(s.ModelId), "text/html; charset=utf-8"));
            app.MapGet("/health", () => Results.Json(new { status = "ok", model = s.ModelId, version = live.Version }));
            app.MapGet("/v1/models", () => Results.Json(new
            {
                @object = "list",
                data = new[] { new { id = s.ModelId, @object = "model", created = _created, owned_by = "palimpsest", version = live.Version } },
            }));
            app.MapPost("/v1/completions", Complete);
            app.MapPost("/v1/edits", Edit);
            app.MapGet("/v1/edits", () => Results.Json(new { @object = "list", version = live.Version, data = live.Journal().Select(JournalRow) }, Json));
            app.MapDelete("/v1/edits/{id}", Revert);
            app.MapPost("/v1/edits/forecast", Forecast);
            app.MapMetrics("/metrics", metrics.Registry);
            app.MapFallback((HttpContext ctx) => throw new ApiError(404, $"{ctx.Request.Method} {ctx.Request.Path}: no such endpoint (see GET / for the page, /v1/completions, /v1/edits, /metrics)", type: "not_found_error"));
        }

        // every request: the latency metric, and a refusal as a 4xx error body plus one log line
        private async Task Guard(HttpContext ctx, Func<Task> next)
        {
            long start = Stopwatch.GetTimestamp();
            try { await next().ConfigureAwait(false); }
            catch (ApiError e) { await Refuse(ctx, e).ConfigureAwait(false); }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                await Refuse(ctx, new ApiError(413, $"body: larger than the limit of {s.MaxBodyBytes} bytes", "body")).ConfigureAwait(false);
            }
            catch (BadHttpRequestException e) { await Refuse(ctx, new ApiError(e.StatusCode, $"request: {e.Message}")).ConfigureAwait(false); }
            catch (OperationCanceledException) when (ctx.RequestAborted.IsCancellationRequested) { /* the client went away */ }
            catch (Exception e)
            {
                Log($"500 {ctx.Request.Method} {ctx.Request.Path}: {CliErrors.OneLine(e.Message)} ({e.GetType().Name})");
                if (!ctx.Response.HasStarted) await Write(ctx, 500, new ApiError(500, "internal error (see the server log)", type: "server_error").Body()).ConfigureAwait(false);
            }
            finally
            {
                string endpoint = (ctx.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "other";
                metrics.Requests.WithLabels(endpoint, ctx.Response.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture))
                    .Observe(Stopwatch.GetElapsedTime(start).TotalSeconds);
            }
        }

        private async Task Refuse(HttpContext ctx, ApiError e)
        {
            Log($"{e.Status} {ctx.Request.Method} {ctx.Request.Path}: {CliErrors.OneLine(e.Message)}");
            if (!ctx.Response.HasStarted) await Write(ctx, e.Status, e.Body()).ConfigureAwait(false);
        }

        private void Log(string line)
        {
            lock (log) { log.WriteLine($"serve: {line}"); log.Flush(); }
        }

        private static async Task Write(HttpContext ctx, int status, object body)
        {
            ctx.Response.StatusCode = status;
            if (status == 401) ctx.Response.Headers.WWWAuthenticate = "Bearer";
            await ctx.Response.WriteAsJsonAsync(body, Json).ConfigureAwait(false);
        }

        private void Authorize(HttpContext ctx)
        {
            if (s.Token is null) throw new ApiError(401, "this server was started without a write token (--token-file FILE or PALIMPSEST_TOKEN): edits are refused", type: "authentication_error");
            string header = ctx.Request.Headers.Authorization.ToString();
            const string bearer = "Bearer ";
            if (!header.StartsWith(bearer, StringComparison.Ordinal)) throw new ApiError(401, "Authorization: a bearer token is needed for edits (Authorization: Bearer TOKEN)", type: "authentication_error");
            // compared as SHA-256 digests in constant time: neither the token's content nor its length shows in the timing
            var given = SHA256.HashData(Encoding.UTF8.GetBytes(header[bearer.Length..].Trim()));
            if (!CryptographicOperations.FixedTimeEquals(given, _tokenHash)) throw new ApiError(401, "Authorization: wrong token", type: "authentication_error");
        }

        private static async Task<byte[]> Body(HttpContext ctx)
        {
            using var ms = new MemoryStream();
            await ctx.Request.Body.CopyToAsync(ms, ctx.RequestAborted).ConfigureAwait(false);
            return ms.ToArray();
        }

        // ---- completions ----------------------------------------------------------------

        private async Task Complete(HttpContext ctx)
        {
            var j = StrictJson.Parse(await Body(ctx).ConfigureAwait(false), "model", "prompt", "max_tokens", "temperature", "top_k", "seed", "stop", "stream", "user", "ignore_eos");
            string? model = j.String("model");
            if (model is not null && model != s.ModelId) throw new ApiError(404, $"model: '{model}' is not served here (this server serves '{s.ModelId}')", "model", "not_found_error");
            var req = new CompletionRequest
            {
                Prompt = j.String("prompt", required: true, maxLength: s.MaxPromptChars)!,
                MaxTokens = j.Int("max_tokens", 16, 1, s.MaxTokens),
                Temperature = j.Double("temperature", 1.0, 0, 100),
                TopK = j.Int("top_k", 0, 0, live.Config.Vocab),
                Seed = j.Int("seed", 0, int.MinValue, int.MaxValue),
                Stop = j.Strings("stop", s.MaxStops, 64),
                IgnoreEos = j.Bool("ignore_eos"), // vLLM's extension: always max_tokens tokens
            };
            try { live.Prepare(req); }
            catch (ArgumentException e) { throw Field(e.Message); }
            string id = "cmpl-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
            long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
            if (!j.Bool("stream"))
            {
                var r = await live.CompleteAsync(req, null, ctx.RequestAborted).ConfigureAwait(false);
                metrics.Tokens.Inc(r.TokenIds.Length);
                metrics.Record(r.Timings);
                await Write(ctx, 200, new
                {
                    id, @object = "text_completion", created, model = s.ModelId, system_fingerprint = $"version-{r.Version}", version = r.Version,
                    choices = new[] { new { text = r.Text, index = 0, logprobs = (object?)null, finish_reason = r.FinishReason } },
                    usage = new { prompt_tokens = r.PromptTokens, completion_tokens = r.TokenIds.Length, total_tokens = r.PromptTokens + r.TokenIds.Length },
                }).ConfigureAwait(false);
                return;
            }
            // server-sent events: each final piece of text as it is decoded, then the finish reason and [DONE]
            ctx.Response.ContentType = "text/event-stream";
            ctx.Response.Headers.CacheControl = "no-cache";
            var (pieces, run) = live.CompleteStreaming(req, ctx.RequestAborted);
            await foreach (var piece in pieces.ReadAllAsync(ctx.RequestAborted).ConfigureAwait(false))
                await Event(ctx, Chunk(id, created, piece, null, null)).ConfigureAwait(false);
            var done = await run.ConfigureAwait(false);
            metrics.Tokens.Inc(done.TokenIds.Length);
            metrics.Record(done.Timings);
            await Event(ctx, Chunk(id, created, "", done.FinishReason, done.Version)).ConfigureAwait(false);
            await ctx.Response.WriteAsync("data: [DONE]\n\n", ctx.RequestAborted).ConfigureAwait(false);
        }

        private object Chunk(string id, long created, string text, string? finish, long? version) => new
        {
            id, @object = "text_completion", created, model = s.ModelId, version,
            choices = new[] { new { text, index = 0, logprobs = (object?)null, finish_reason = finish } },
        };

        private static async Task Event(HttpContext ctx, object chunk)
        {
            await ctx.Response.WriteAsync("data: " + JsonSerializer.Serialize(chunk, Json) + "\n\n", ctx.RequestAborted).ConfigureAwait(false);
            await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
        }

        // ---- edits ----------------------------------------------------------------------

        private static readonly string[] RequestFields = ["subject", "prompt", "target_new", "target_true", "case_id"];

        private (IReadOnlyList<EditRequest> Requests, string Method, string? Hparams, StrictJson Body) EditBody(byte[] body, params string[] extra)
        {
            var j = StrictJson.Parse(body, ["requests", "method", "hparams", .. RequestFields, .. extra]);
            string method = j.String("method") ?? Editors.Rome.Name; // the default, as the CLI's --method
            string? hparams = null;
            if (j.Raw("hparams") is { } hp)
            {
                if (hp.ValueKind != JsonValueKind.Object) throw ApiError.BadField("hparams", "expected a JSON object of the method's hyper-parameters");
                hparams = hp.GetRawText();
            }
            var list = new List<EditRequest>();
            if (j.Raw("requests") is { } rs)
            {
                if (RequestFields.Any(j.Has)) throw ApiError.BadField("requests", "give either requests: [...] or one request's fields, not both");
                if (rs.ValueKind != JsonValueKind.Array) throw ApiError.BadField("requests", "expected a list of edit requests");
                if (rs.GetArrayLength() == 0) throw ApiError.BadField("requests", "the list is empty");
                if (rs.GetArrayLength() > s.MaxBatch) throw ApiError.BadField("requests", $"{rs.GetArrayLength()} requests, more than the limit of {s.MaxBatch} per edit");
                int i = 0;
                foreach (var r in rs.EnumerateArray())
                {
                    list.Add(Request(StrictJson.Of(r, $"requests[{i}].", $"requests[{i}]", RequestFields), $"requests[{i}]."));
                    i++;
                }
            }
            else list.Add(Request(j, ""));
            return (list, method, hparams, j);
        }

        private EditRequest Request(StrictJson j, string prefix)
        {
            string subject = j.String("subject", required: true, maxLength: 256)!;
            string prompt = j.String("prompt", required: true, maxLength: 1024)!;
            string target = j.String("target_new", required: true, maxLength: 256)!;
            if (subject.Trim().Length == 0) throw ApiError.BadField(prefix + "subject", "is empty");
            if (target.Trim().Length == 0) throw ApiError.BadField(prefix + "target_new", "is empty");
            if (!prompt.Contains("{}", StringComparison.Ordinal))
            {
                // as the CLI: a prompt written with the subject in it has its first occurrence become {}
                int at = prompt.IndexOf(subject, StringComparison.Ordinal);
                if (at < 0) throw ApiError.BadField(prefix + "prompt", $"has no {{}} and does not contain the subject \"{subject}\"");
                prompt = prompt[..at] + "{}" + prompt[(at + subject.Length)..];
            }
            if (prompt.Split("{}").Length != 2) throw ApiError.BadField(prefix + "prompt", "must contain exactly one {} for the subject");
            return new EditRequest
            {
                Subject = subject, Prompt = prompt, TargetNew = target, TargetTrue = j.String("target_true", maxLength: 256),
                CaseId = j.Raw("case_id") is { } c ? c.ToString() : null,
            };
        }

        private async Task Edit(HttpContext ctx)
        {
            Authorize(ctx);
            var (reqs, method, hparams, _) = EditBody(await Body(ctx).ConfigureAwait(false));
            EditResult r;
            try { r = await live.EditAsync(reqs, method, hparams, ctx.RequestAborted).ConfigureAwait(false); }
            catch (EditRejectedException e) { throw Field(e.Message); }
            metrics.Edits.Inc();
            metrics.Record(r.Timings);
            Log($"edit {r.Id} applied ({r.Method}, {r.Requests.Count} request(s), layers {string.Join(",", r.Layers)}): version {r.Version}, compute {r.Timings.ComputeMs:0} ms (held {r.Timings.HeldMs:0} ms), publish {r.Timings.PublishMs * 1000:0} µs");
            await Write(ctx, 200, new
            {
                id = r.Id, @object = "edit", version = r.Version, method = r.Method, layers = r.Layers,
                requests = r.Requests.Select(q => new { subject = q.Subject, prompt = q.Prompt, target_new = q.TargetNew }),
                before = r.Before, after = r.After,
                timings_ms = new { compute = r.Timings.ComputeMs, commit = r.Timings.CommitMs, upload = r.Timings.UploadMs, publish = r.Timings.PublishMs, held = r.Timings.HeldMs },
            }).ConfigureAwait(false);
        }

        private async Task Revert(HttpContext ctx, string id)
        {
            Authorize(ctx);
            if (!long.TryParse(id, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out long editId))
                throw new ApiError(400, $"id: '{id}' is not an edit id (a positive integer from GET /v1/edits)", "id");
            var entry = live.Journal().FirstOrDefault(e => e.Id == editId) ?? throw new ApiError(404, $"id: no edit {editId} in the journal", "id", "not_found_error");
            if (entry.Reverted) throw new ApiError(409, $"id: edit {editId} was already reverted at {entry.RevertedTime:u}", "id");
            RevertResult r;
            try { r = await live.RevertAsync(editId, ctx.RequestAborted).ConfigureAwait(false); }
            catch (InvalidOperationException e) when (e.GetType() == typeof(InvalidOperationException)) { throw new ApiError(409, $"id: {e.Message}", "id"); }
            metrics.Reverts.Inc();
            metrics.Record(r.Timings);
            Log($"edit {editId} reverted: version {r.Version}");
            await Write(ctx, 200, new
            {
                id = editId, @object = "edit.reverted", version = r.Version,
                timings_ms = new { commit = r.Timings.CommitMs, upload = r.Timings.UploadMs, publish = r.Timings.PublishMs },
            }).ConfigureAwait(false);
        }

        private async Task Forecast(HttpContext ctx)
        {
            Authorize(ctx); // it takes the writer's turn and computes a whole edit
            var (reqs, method, hparams, json) = EditBody(await Body(ctx).ConfigureAwait(false), "top");
            int top = json.Int("top", 5, 1, 50);
            IReadOnlyList<ForecastRow> rows;
            try { rows = await live.ForecastAsync(reqs, method, hparams, null, top, ctx.RequestAborted).ConfigureAwait(false); }
            catch (EditRejectedException e) { throw Field(e.Message); }
            await Write(ctx, 200, new
            {
                @object = "edit.forecast", version = live.Version,
                data = rows.Select(r => new
                {
                    request = r.Request, subject = r.Subject, target_new = r.Target, layer = r.Layer, own = r.Own, max_drift = r.MaxDrift, mean_drift = r.MeanDrift,
                    most_at_risk = r.MostAtRisk.Select(f => new { fact = f.Name, drift = f.Drift }),
                }),
            }).ConfigureAwait(false);
        }

        private static object JournalRow(Palimpsest.Journal.JournalEntry e) => new
        {
            id = e.Id, time = e.Time, method = e.Method, subject = e.Subject, target = e.Target, layers = e.Layers,
            delta_norm = e.DeltaNorm, generation = e.Generation, reverted = e.Reverted, reverted_time = e.RevertedTime, outcome = e.Outcome,
        };

        // a library message "field: what" (or "requests[1]: ...", "hparams ...: ...") as a 400 naming the field
        private static ApiError Field(string message)
        {
            int colon = message.IndexOf(':', StringComparison.Ordinal);
            string? param = colon > 0 && !message[..colon].Contains(' ', StringComparison.Ordinal) ? message[..colon] : null;
            return new ApiError(400, message, param);
        }
    }
}
