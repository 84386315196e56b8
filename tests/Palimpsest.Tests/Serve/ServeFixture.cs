using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Palimpsest.Cli.Serve;
using Palimpsest.Hosting;
using Palimpsest.Journal;
using Palimpsest.Tests.Journal;

namespace Palimpsest.Tests.Serve;

/// <summary>A server in this process on a free loopback port, over a temporary edited copy of the committed demo model.</summary>
internal sealed class ServeFixture : IAsyncDisposable
{
    public const string Token = "test-token-0123456789abcdef";
    public static string Model => Path.Combine(Paths.RepoRoot, "data", "models", "facts-d128-l5");

    private readonly TempDir _tmp;
    private readonly LiveModel _live;
    private readonly ServeHost _host;

    private ServeFixture(TempDir tmp, LiveModel live, ServeHost host, StringWriter log)
    {
        _tmp = tmp; _live = live; _host = host; Log = log;
        Http = new HttpClient { BaseAddress = new Uri(host.Url), Timeout = TimeSpan.FromMinutes(3) };
    }

    public HttpClient Http { get; }
    public StringWriter Log { get; }
    public string Url => _host.Url;
    public LiveModel Live => _live;

    public static async Task<ServeFixture> StartAsync(string? token = Token)
    {
        var tmp = JournalFixtures.NewTemp();
        string dir = tmp.Sub("served");
        EditedModel.Create(Model, dir).Dispose();
        var live = LiveModel.Open(dir, new LiveModelOptions { LowPriorityEdits = false /* the suite fills both cores: a nice-19 edit would crawl */, Streams = 2, KeyStatsCache = tmp.Sub("keystats") });
        var log = new StringWriter();
        var host = await ServeHost.StartAsync(new ServeSettings { Port = 0, Token = token, ModelId = "served" }, live, new ServeMetrics(live), log);
        return new ServeFixture(tmp, live, host, log);
    }

    public string[] LogLines() { lock (Log) return Log.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries); }

    public async Task<(int Status, JsonElement Body)> Send(HttpMethod method, string path, string? body = null, string? token = null)
    {
        using var req = new HttpRequestMessage(method, path);
        if (body is not null) req.Content = new StringContent(body, Encoding.UTF8, "application/json");
        if (token is not null) req.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        using var r = await Http.SendAsync(req);
        string text = await r.Content.ReadAsStringAsync();
        return ((int)r.StatusCode, text.Length == 0 ? default : JsonDocument.Parse(text).RootElement.Clone());
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _host.DisposeAsync();
        _live.Dispose();
        _tmp.Dispose();
    }
}
