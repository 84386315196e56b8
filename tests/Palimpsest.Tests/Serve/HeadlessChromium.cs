using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Palimpsest.Tests.Serve;

/// <summary>
/// Debian's chromium, headless, driven over the DevTools protocol (a WebSocket; no driver package):
/// navigate, evaluate JavaScript in the page, wait for a condition, take a PNG screenshot.
/// </summary>
internal sealed partial class HeadlessChromium : IAsyncDisposable
{
    public const string Binary = "/usr/bin/chromium";

    private readonly Process _process;
    private readonly ClientWebSocket _ws = new();
    private readonly string _profile;
    private int _id;

    private HeadlessChromium(Process process, string profile) { _process = process; _profile = profile; }

    public static bool Installed => File.Exists(Binary);

    public static async Task<HeadlessChromium> StartAsync(CancellationToken cancel)
    {
        string profile = Path.Combine(Path.GetTempPath(), "palimpsest-chromium-" + Guid.NewGuid().ToString("N")[..8]);
        // in a session of its own (setsid execs chromium in place: same pid): whatever chromium and its
        // helpers signal as a process group on the way out, the test process is not in it
        var psi = new ProcessStartInfo("setsid") { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var a in new[] { Binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0", "--window-size=1000,900", $"--user-data-dir={profile}", "about:blank" })
            psi.ArgumentList.Add(a);
        var p = Process.Start(psi)!;
        var c = new HeadlessChromium(p, profile);
        _ = p.StandardOutput.ReadToEndAsync(cancel);
        string? browser = null;
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (browser is null && DateTime.UtcNow < deadline)
        {
            var line = await p.StandardError.ReadLineAsync(cancel) ?? throw new InvalidOperationException("chromium exited before it listened");
            if (DevTools().Match(line) is { Success: true } m) browser = m.Groups[1].Value;
        }
        if (browser is null) throw new TimeoutException("chromium never said where DevTools listens");
        _ = p.StandardError.ReadToEndAsync(cancel);
        // the page target of about:blank
        using var http = new HttpClient();
        var targets = JsonDocument.Parse(await http.GetStringAsync($"http://{browser}/json/list", cancel)).RootElement;
        string page = targets.EnumerateArray().First(t => t.GetProperty("type").GetString() == "page").GetProperty("webSocketDebuggerUrl").GetString()!;
        await c._ws.ConnectAsync(new Uri(page), cancel);
        return c;
    }

    /// <summary>Sends one DevTools command and returns its result (events in between are skipped).</summary>
    public async Task<JsonElement> Call(string method, object parameters, CancellationToken cancel)
    {
        int id = ++_id;
        var bytes = JsonSerializer.SerializeToUtf8Bytes(new { id, method, @params = parameters });
        await _ws.SendAsync(bytes, WebSocketMessageType.Text, true, cancel);
        var buffer = new byte[1 << 16];
        while (true)
        {
            using var ms = new MemoryStream();
            WebSocketReceiveResult r;
            do { r = await _ws.ReceiveAsync(buffer, cancel); ms.Write(buffer, 0, r.Count); } while (!r.EndOfMessage);
            var msg = JsonDocument.Parse(ms.ToArray()).RootElement;
            if (!msg.TryGetProperty("id", out var got) || got.GetInt32() != id) continue;
            if (msg.TryGetProperty("error", out var err)) throw new InvalidOperationException($"{method}: {err}");
            return msg.GetProperty("result").Clone();
        }
    }

    public Task Navigate(string url, CancellationToken cancel) => Call("Page.navigate", new { url }, cancel);

    /// <summary>The value of a JavaScript expression in the page (promises awaited).</summary>
    public async Task<JsonElement> Eval(string expression, CancellationToken cancel)
    {
        var r = await Call("Runtime.evaluate", new { expression, returnByValue = true, awaitPromise = true }, cancel);
        if (r.TryGetProperty("exceptionDetails", out var ex)) throw new InvalidOperationException($"page script failed: {ex}");
        return r.GetProperty("result").TryGetProperty("value", out var v) ? v.Clone() : default;
    }

    /// <summary>Waits until a JavaScript condition holds; fails with what <paramref name="describe"/> says of the page.</summary>
    public async Task WaitFor(string condition, string describe, TimeSpan timeout, CancellationToken cancel)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await Eval($"!!({condition})", cancel) is { ValueKind: JsonValueKind.True }) return;
            await Task.Delay(100, cancel);
        }
        throw new TimeoutException($"the page never showed {condition}; it shows: {await Eval(describe, cancel)}");
    }

    public async Task<byte[]> Screenshot(CancellationToken cancel) =>
        Convert.FromBase64String((await Call("Page.captureScreenshot", new { format = "png" }, cancel)).GetProperty("data").GetString()!);

    public async ValueTask DisposeAsync()
    {
        try { await _ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None); } catch (WebSocketException) { }
        _ws.Dispose();
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
        try { Directory.Delete(_profile, true); } catch (IOException) { }
    }

    [GeneratedRegex(@"DevTools listening on ws://([^/]+)/")]
    private static partial Regex DevTools();
}
