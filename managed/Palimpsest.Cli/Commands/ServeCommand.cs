using System.CommandLine;
using Palimpsest.Cli.Serve;
using Palimpsest.Hosting;
using Palimpsest.Journal;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest serve DIR [--out DIR] [--host 127.0.0.1] [--port 8080] [--token-file F] [--device cpu|cuda] [--streams N] [--stats-corpus F]`:
/// answers OpenAI-shaped completions while edits and reverts arrive over HTTP (see <see cref="ServeHost"/>).
/// DIR is an edited-model folder (served and edited in place); a plain model folder needs --out, the
/// edited folder created from it (or reopened), because an edit is acknowledged only once the
/// journal holds it. Runs until interrupted (Ctrl+C, SIGTERM).
/// </summary>
internal static class ServeCommand
{
    public const string TokenVariable = "PALIMPSEST_TOKEN";

    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var outDir = new Option<string?>("--out") { Description = "with a plain model folder: the edited-model folder to serve and journal edits in (created from MODEL, or reopened)" };
        var host = new Option<string>("--host") { Description = "address to listen on (default 127.0.0.1; anything else needs a write token)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port, printed on start)", DefaultValueFactory = _ => 8080 };
        var tokenFile = new Option<string?>("--token-file") { Description = $"file holding the bearer token that edits and reverts need (else ${TokenVariable}; without either, writes are refused)" };
        var streams = new Option<int?>("--streams") { Description = "completions decoded at once (default: one per core); more wait in a queue" };
        var corpus = KeyStatsOptions.Corpus("--stats-corpus");
        var cache = KeyStatsOptions.Cache();
        var editPriority = new Option<string>("--edit-priority") { Description = "idle: edits compute on a nice-19 thread and are held at their next matrix product while any completion decodes (for at most --edit-hold per edit), so they run between completions instead of sharing the caches with them (default); low: nice 19 only; normal: at the streams' priority, never held", DefaultValueFactory = _ => "idle" };
        editPriority.AcceptOnlyFromAmong("low", "idle", "normal");
        var editHold = new Option<double>("--edit-hold") { Description = "with --edit-priority idle: the most seconds an edit is held in all, so a steady load cannot starve it", DefaultValueFactory = _ => 2.0 };
        var warm = new Option<string?>("--warm") { Description = "make this method's editor before serving (its key statistics and templates), so the first edit costs what later ones do, e.g. --warm rome" };
        var maxTokens = new Option<int>("--max-tokens") { Description = "the largest max_tokens a completion may ask for", DefaultValueFactory = _ => 512 };
        var device = CommonOptions.Device();
        var dtype = DeviceChoice.DtypeOption();
        var cmd = new Command("serve", "serve completions over HTTP while facts are edited and reverted (OpenAI-shaped API, Prometheus metrics, a page at /)")
            { model, outDir, host, port, tokenFile, streams, corpus, cache, warm, maxTokens, editPriority, editHold, device, dtype };
        cmd.SetAction(pr => EditingErrors.Guard(() =>
        {
            var dev = DeviceChoice.Read(pr, device, dtype);
            dev.Check();
            string source = pr.GetValue(model)!;
            using (ModelSession.Open(source)) { } // one-line errors for a missing folder or a bad config first
            string? token = Token(pr.GetValue(tokenFile));
            int p = pr.GetValue(port);
            if (p is < 0 or > 65535) throw new CliUsageException($"--port: {p} is not a TCP port (0..65535)");
            if (pr.GetValue(streams) is int n && n < 1) throw new CliUsageException($"--streams: must be a positive integer (got {n})");
            if (pr.GetValue(editHold) is var hold && !(hold >= 0 && hold <= 3600)) throw new CliUsageException($"--edit-hold: must be seconds between 0 and 3600 (got {hold})");
            if (pr.GetValue(maxTokens) < 1) throw new CliUsageException($"--max-tokens: must be a positive integer (got {pr.GetValue(maxTokens)})");
            var settings = new ServeSettings { Host = pr.GetValue(host)!, Port = p, Token = token, MaxTokens = pr.GetValue(maxTokens) };
            try { settings.BindAddress(); } // before anything is created or loaded
            catch (ArgumentException e) { throw new CliUsageException(e.Message); }

            string dir = Folder(source, pr.GetValue(outDir), io);
            string? corpusSpec = pr.GetValue(corpus);
            if (corpusSpec is not null && !File.Exists(KeyStatsOptions.PathOf(corpusSpec)))
                throw new CliUsageException($"--stats-corpus: file '{KeyStatsOptions.PathOf(corpusSpec)}' not found");
            ServeMetrics? metrics = null;
            var options = new LiveModelOptions
            {
                Backend = dev.CreateBackend,
                Streams = pr.GetValue(streams) ?? Environment.ProcessorCount,
                StatsCorpus = corpusSpec,
                KeyStatsCache = KeyStatsOptions.CacheDir(pr.GetValue(cache)),
                TokenInterval = seconds => metrics?.TokenGap.Observe(seconds),
                LowPriorityEdits = pr.GetValue(editPriority) != "normal",
                EditsYieldToDecoding = pr.GetValue(editPriority) == "idle",
                MaxEditHold = TimeSpan.FromSeconds(pr.GetValue(editHold)),
            };
            using var live = LiveModel.Open(dir, options);
            if (live.Recovery is not null) io.Out.WriteLine($"recovered {dir}: {live.Recovery}");
            metrics = new ServeMetrics(live);
            if (pr.GetValue(warm) is { } method)
            {
                try { io.Out.WriteLine($"{method}: editor ready in {live.WarmAsync(method).GetAwaiter().GetResult():0.0} s (key statistics, templates, {live.Journal().Count(e => !e.Reverted)} active edit(s))"); }
                catch (EditRejectedException e) { throw new CliUsageException($"--warm {method}: {e.Message}"); }
            }
            settings = settings with { ModelId = Path.GetFileName(Path.GetFullPath(dir).TrimEnd(Path.DirectorySeparatorChar)) };
            ServeHost server;
            try { server = ServeHost.StartAsync(settings, live, metrics, io.Err).GetAwaiter().GetResult(); }
            catch (IOException e) { throw new CliUsageException($"--port {p}: cannot listen on {settings.Host}:{p} ({CliErrors.OneLine(e.Message)})"); }
            io.Out.WriteLine($"serving {dir} (weights version {live.Version}, {dev}) at {server.Url}; edits {(token is null ? $"refused (no write token: --token-file or {TokenVariable})" : "need the bearer token")}");
            io.Out.Flush();
            server.WaitForShutdownAsync(CancellationToken.None).GetAwaiter().GetResult();
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
            io.Out.WriteLine($"stopped at weights version {live.Version}");
            return CliErrors.Ok;
        }));
        return cmd;
    }

    private static string? Token(string? file)
    {
        string? token;
        if (file is not null)
        {
            if (!File.Exists(file)) throw new CliUsageException($"--token-file: file '{file}' not found");
            token = File.ReadAllText(file).Trim();
            if (token.Length == 0) throw new CliUsageException($"--token-file {file}: the file is empty");
        }
        else token = Environment.GetEnvironmentVariable(TokenVariable) is { Length: > 0 } t ? t.Trim() : null;
        if (token is not null && token.Length < 16) throw new CliUsageException($"the write token has {token.Length} characters; use at least 16 (e.g. openssl rand -hex 16)");
        return token;
    }

    // the edited folder to serve: MODEL itself, or --out created from it (or reopened)
    private static string Folder(string source, string? outDir, CliIo io)
    {
        if (EditedModel.IsEditedModel(source))
        {
            if (outDir is not null) throw new CliUsageException($"{source} is an edited-model folder, served and edited in place: leave out --out");
            return source;
        }
        if (outDir is null)
            throw new CliUsageException($"{source} is a plain model folder: give --out DIR, the edited-model folder to serve it from (edits are journaled there)");
        if (EditedModel.IsEditedModel(outDir)) return outDir;
        EditedModel.Create(source, outDir).Dispose();
        io.Out.WriteLine($"created {outDir} from {source}");
        return outDir;
    }
}
