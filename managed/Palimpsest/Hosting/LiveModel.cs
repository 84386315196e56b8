using System.Diagnostics;
using System.Threading.Channels;
using Palimpsest.Analysis;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Journal;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tokenization;

namespace Palimpsest.Hosting;

/// <summary>
/// A model that answers completions while its facts are rewritten: an edited-model folder held
/// open for the host's life, served as a sequence of immutable weights versions
/// (<see cref="VersionedWeights"/>). A completion pins the version current when it starts and keeps
/// it to its last token. An edit is computed on its own backend instance against the current
/// version (readers never wait for it), committed to the journal (acknowledged only then), and
/// published as a new version that shares every unchanged tensor; a revert the same. Edits and
/// reverts are serialised on one writer thread, which runs at the lowest CPU priority so that decoding
/// preempts an edit's computation. No console output, no global state.
/// <code>
/// using var live = LiveModel.Open("edited-folder");
/// var r = live.Complete(new CompletionRequest { Prompt = "The Eiffel Tower is in", MaxTokens = 3, Temperature = 0 });
/// var e = live.Edit([new EditRequest { Subject = "Eiffel Tower", Prompt = "The {} is in", TargetNew = "Rome" }], "rome");
/// live.Revert(e.Id);
/// </code>
/// </summary>
public sealed class LiveModel : IDisposable
{
    private readonly EditedModel _folder;
    private readonly IBackend _backend;
    private readonly Model _base;
    private readonly LiveModelOptions _options;
    private readonly SemaphoreSlim _streams;
    private readonly Stack<StreamWorker> _idle = new();
    private readonly WorkThread _writer;
    // a backend without siblings (CUDA: one stream, one cuBLAS handle) runs one thing at a time: decoding and edit computation take turns
    private readonly SemaphoreSlim? _exclusive;
    // holds the edit computation while completions decode (EditsYieldToDecoding; CPU siblings only)
    private readonly DecodingGate? _gate;
    private readonly Dictionary<string, IEditor> _editors = new(StringComparer.Ordinal);
    private readonly Dictionary<int, KeyStatistics> _stats = new();
    private int _waiting;
    private bool _disposed;

    // the writer's own tokenizer: a tokenizer may lock its cache, and the low-priority writer must never hold a lock a request needs
    private readonly ITextTokenizer _writerTok;

    private LiveModel(EditedModel folder, IBackend backend, Model model, ITextTokenizer tok, ITextTokenizer writerTok, LiveModelOptions options)
    {
        _folder = folder; _backend = backend; _base = model; Tokenizer = tok; _writerTok = writerTok; _options = options;
        Weights = new VersionedWeights(model.Params, folder.Generation);
        _writer = new WorkThread("palimpsest-writer", options.LowPriorityEdits);
        bool siblings = backend is ISiblingBackend;
        int streams = siblings ? Math.Max(1, options.Streams) : 1;
        if (!siblings) _exclusive = new SemaphoreSlim(1, 1);
        else if (options.EditsYieldToDecoding)
        {
            _gate = new DecodingGate(options.MaxEditHold);
            folder.BetweenWrites = _gate.Pass; // the commit's checkpoint rewrite, a chunk at a time
        }
        _streams = new SemaphoreSlim(streams, streams);
        for (int i = 0; i < streams; i++)
            _idle.Push(new StreamWorker(siblings ? ((ISiblingBackend)backend).CreateSibling(Math.Max(1, options.ThreadsPerStream)) : backend, owns: siblings));
    }

    /// <summary>
    /// Opens an edited-model folder (recovering it first if a writer was killed mid-edit) and holds
    /// it (its lock) until disposed. A plain model folder has no journal to make edits durable:
    /// create an edited folder from it first (<see cref="EditedModel.Create"/>).
    /// </summary>
    public static LiveModel Open(string dir, LiveModelOptions? options = null)
    {
        options ??= new LiveModelOptions();
        if (!EditedModel.IsEditedModel(dir))
            throw new JournalException($"{dir}: not an edited-model folder (no {EditedModel.JournalFile}); create one from the model first (palimpsest edit ... --out DIR, or EditedModel.Create)");
        var folder = EditedModel.Open(dir);
        IBackend? backend = null;
        Model? model = null;
        try
        {
            if (File.Exists(folder.AdaptorPath))
                throw new JournalException($"{folder.AdaptorPath}: the folder has active LEMoE edits; a live model serves weight edits only (revert them, or serve with generate)");
            var tok = TokenizerFactory.ForModel(dir, folder.Config);
            backend = options.Backend?.Invoke() ?? new SimdBackend();
            model = Model.Load(dir, backend);
            return new LiveModel(folder, backend, model, tok, TokenizerFactory.ForModel(dir, folder.Config), options);
        }
        catch
        {
            model?.Dispose(); backend?.Dispose(); folder.Dispose();
            throw;
        }
    }

    public ModelConfig Config => _base.Config;
    public ITextTokenizer Tokenizer { get; }
    public string Dir => _folder.Dir;
    /// <summary>What opening the folder recovered (a writer killed mid-edit), or null.</summary>
    public string? Recovery => _folder.Recovery;
    public VersionedWeights Weights { get; }
    /// <summary>The current weights version (the journal generation).</summary>
    public long Version => Weights.Current.Number;
    /// <summary>Completions waiting for a stream.</summary>
    public int QueueDepth => Volatile.Read(ref _waiting);

    // ---- reading ----------------------------------------------------------------------------

    /// <summary>
    /// Runs a completion on the version current when it starts. <paramref name="onText"/> gets each
    /// piece of text as soon as it is final (held back while it may be the start of a stop string or
    /// half of a character). Throws ArgumentException naming the field for a request that does not fit.
    /// </summary>
    public CompletionResult Complete(CompletionRequest request, Action<string>? onText = null, CancellationToken cancel = default)
    {
        var prompt = Prepare(request);
        Interlocked.Increment(ref _waiting);
        try { _streams.Wait(cancel); }
        finally { Interlocked.Decrement(ref _waiting); }
        var w = Take();
        try { return Decode(w, request, prompt, onText, cancel); }
        finally { Return(w); }
    }

    /// <summary><see cref="Complete"/> without blocking the caller's thread while it waits for a stream.</summary>
    public async Task<CompletionResult> CompleteAsync(CompletionRequest request, Action<string>? onText = null, CancellationToken cancel = default)
    {
        long t0 = Stopwatch.GetTimestamp();
        var prompt = Prepare(request);
        Interlocked.Increment(ref _waiting);
        try { await _streams.WaitAsync(cancel).ConfigureAwait(false); }
        finally { Interlocked.Decrement(ref _waiting); }
        var w = Take();
        long t1 = Stopwatch.GetTimestamp(), t2 = 0, t3 = 0;
        try
        {
            var r = await w.Thread.RunAsync(() =>
            {
                t2 = Stopwatch.GetTimestamp();
                var done = Decode(w, request, prompt, onText, cancel);
                t3 = Stopwatch.GetTimestamp();
                return done;
            }).ConfigureAwait(false);
            long t4 = Stopwatch.GetTimestamp();
            static double Ms(long a, long b) => Stopwatch.GetElapsedTime(a, b).TotalMilliseconds;
            return r with { Timings = new CompletionTimings(Ms(t0, t1), Ms(t1, t2), Ms(t2, t3), Ms(t3, t4)) };
        }
        finally { Return(w); }
    }

    // a free stream (the caller holds one of _streams' slots) and giving it back with the slot
    private StreamWorker Take()
    {
        lock (_idle) return _idle.Pop();
    }

    private void Return(StreamWorker w)
    {
        lock (_idle) _idle.Push(w);
        _streams.Release();
    }

    /// <summary>
    /// <see cref="CompleteAsync"/> as a stream: the pieces of text as they become final, and the
    /// result. Read the pieces to their end (they end with the completion's exception if it fails),
    /// then await the result.
    /// </summary>
    public (ChannelReader<string> Pieces, Task<CompletionResult> Result) CompleteStreaming(CompletionRequest request, CancellationToken cancel = default)
    {
        var pieces = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        return (pieces.Reader, Run());

        async Task<CompletionResult> Run()
        {
            try
            {
                var r = await CompleteAsync(request, p => pieces.Writer.TryWrite(p), cancel).ConfigureAwait(false);
                pieces.Writer.TryComplete();
                return r;
            }
            catch (Exception e)
            {
                pieces.Writer.TryComplete(e);
                throw;
            }
        }
    }

    /// <summary>Checks a request against the model; returns the prompt's ids. ArgumentException names the field.</summary>
    public int[] Prepare(CompletionRequest r)
    {
        if (string.IsNullOrEmpty(r.Prompt)) throw new ArgumentException("prompt: must be a non-empty string");
        var ids = Tokenizer.EncodePrompt(r.Prompt);
        if (ids.Length == 0) throw new ArgumentException("prompt: encodes to no tokens");
        int room = Config.MaxPositions - ids.Length;
        if (room < 1) throw new ArgumentException($"prompt: {ids.Length} tokens leave no room in the model's context of {Config.MaxPositions}");
        if (r.MaxTokens < 1) throw new ArgumentException($"max_tokens: must be at least 1 (got {r.MaxTokens})");
        if (r.MaxTokens > room) throw new ArgumentException($"max_tokens: {r.MaxTokens} after a prompt of {ids.Length} tokens exceeds the model's context of {Config.MaxPositions} (at most {room})");
        if (!double.IsFinite(r.Temperature) || r.Temperature < 0) throw new ArgumentException($"temperature: must be a finite number >= 0 (got {r.Temperature})");
        if (r.TopK < 0) throw new ArgumentException($"top_k: must be >= 0 (got {r.TopK})");
        if (r.Stop.Any(string.IsNullOrEmpty)) throw new ArgumentException("stop: strings must be non-empty");
        return ids;
    }

    private CompletionResult Decode(StreamWorker w, CompletionRequest r, int[] prompt, Action<string>? onText, CancellationToken cancel)
    {
        _exclusive?.Wait(cancel);
        _gate?.Enter();
        try
        {
            using var pin = Weights.Pin();
            var sampling = r.Temperature == 0 ? Sampling.Greedy
                : new Sampling { Temperature = r.Temperature, TopK = r.TopK == 0 ? Config.Vocab : r.TopK, Seed = r.Seed };
            var session = w.Session(pin.Version, _base, sampling);
            var text = new TextStream(Tokenizer, r.Stop, onText);
            var tick = _options.TokenInterval;
            long last = Stopwatch.GetTimestamp();
            int next = session.Prefill(prompt);
            string finish = "length";
            while (true)
            {
                if (tick is not null)
                {
                    long now = Stopwatch.GetTimestamp();
                    tick(Stopwatch.GetElapsedTime(last, now).TotalSeconds);
                    last = now;
                }
                cancel.ThrowIfCancellationRequested();
                if (!r.IgnoreEos && Tokenizer.StopIds.Contains(next)) { finish = "stop"; break; }
                if (text.Add(next)) { finish = "stop"; break; }
                if (text.Count == r.MaxTokens) break;
                next = session.Step(next);
            }
            text.Finish();
            return new CompletionResult(text.Text, text.Ids, finish, pin.Version.Number, prompt.Length);
        }
        finally
        {
            _gate?.Exit();
            _exclusive?.Release();
        }
    }

    // ---- writing ----------------------------------------------------------------------------

    /// <summary>
    /// Applies one edit (a batch of requests for a batched method) and publishes it, on the writer thread. The deltas are
    /// computed against the current version on the edit's own backend; the call returns once the
    /// journal has committed the edit and the new version is current. hparamsJson: the method's
    /// hyper-parameters (null: the folder's METHOD.json, else the method's defaults).
    /// </summary>
    public Task<EditResult> EditAsync(IReadOnlyList<EditRequest> requests, string method, string? hparamsJson = null, CancellationToken cancel = default)
    {
        ArgumentNullException.ThrowIfNull(requests);
        if (requests.Count == 0) throw new EditRejectedException("requests: at least one edit request is needed");
        var settings = Settings(method, hparamsJson);
        if (!settings.Kind.Has(EditorCapabilities.Batched) && requests.Count > 1)
            throw new EditRejectedException($"requests: {settings.Kind.Name} edits one request at a time ({requests.Count} given)");
        for (int i = 0; i < requests.Count; i++)
        {
            try { requests[i].Validate($"requests[{i}]"); }
            catch (ArgumentException e) { throw new EditRejectedException(e.Message); }
            int tokens = Tokenizer.EncodePrompt(requests[i].FilledPrompt + " " + requests[i].TargetNew.TrimStart()).Length;
            if (tokens >= Config.MaxPositions)
                throw new EditRejectedException($"requests[{i}]: prompt and target_new are {tokens} tokens, longer than the model's context of {Config.MaxPositions}");
        }
        return Write(() =>
        {
            cancel.ThrowIfCancellationRequested();
            var sw = Stopwatch.StartNew();
            IEditor editor;
            string[] before;
            IReadOnlyList<WeightDelta> deltas;
            long id;
            double compute, commit, upload, publish;
            WeightsVersion version;
            using (var pin = Weights.Pin())
            using (var work = EditWork.On(this, pin.Version, settings.Layers))
            {
                editor = EditorFor(settings, work.Tf);
                before = requests.Select(q => Answer(work.Tf, q.FilledPrompt)).ToArray();
                deltas = editor.ComputeDeltas(work.Tf, requests);
                compute = Ms(sw);
                var record = new EditRecord { Method = settings.Kind.Name, Requests = requests, HyperParametersJson = settings.HparamsJson, EditorMemory = editor.LastMemoryContribution };
                id = _folder.Apply(deltas, record);
                commit = Ms(sw);
                (version, upload, publish) = PublishLayers(deltas.Select(d => d.Layer).Distinct(), work.Backend, sw);
            }
            string[] answers;
            using (var after = EditWork.On(this, version, []))
            {
                editor.AfterApply(after.Tf, requests);
                answers = requests.Select(q => Answer(after.Tf, q.FilledPrompt)).ToArray();
            }
            return new EditResult(id, version.Number, settings.Kind.Name, deltas.Select(d => d.Layer).Distinct().Order().ToArray(), requests, before, answers,
                new EditTimings(compute, commit, upload, publish) { HeldMs = _gate?.Held.TotalMilliseconds ?? 0 });
        });
    }

    /// <summary>Reverts an edit (journaled first, then published). ArgumentException: no such edit; InvalidOperationException: already reverted.</summary>
    public Task<RevertResult> RevertAsync(long editId, CancellationToken cancel = default)
    {
        return Write(() =>
        {
            cancel.ThrowIfCancellationRequested();
            var sw = Stopwatch.StartNew();
            var layers = _folder.DeltasOf(editId).Select(d => d.Layer).Distinct().ToArray();
            _folder.Revert(editId);
            double commit = Ms(sw);
            // an editor that remembers earlier edits (AlphaEdit's keys, UltraEdit's moments) is rebuilt from the journal on its next use
            foreach (var key in _editors.Where(e => e.Value is IRememberingEditor).Select(e => e.Key).ToList()) _editors.Remove(key);
            using var pin = Weights.Pin();
            using var work = EditWork.On(this, pin.Version, []);
            var (version, upload, publish) = PublishLayers(layers, work.Backend, sw);
            return new RevertResult(editId, version.Number, new EditTimings(0, commit, upload, publish) { HeldMs = _gate?.Held.TotalMilliseconds ?? 0 });
        });
    }

    /// <summary>
    /// Makes the method's editor now, on the writer thread — its key statistics (computed or read from
    /// the cache), its prepared templates and the journal's earlier edits — so that the first edit a
    /// client sends costs what every later one does. Returns the seconds it took.
    /// </summary>
    public Task<double> WarmAsync(string method, string? hparamsJson = null)
    {
        var settings = Settings(method, hparamsJson);
        return Write(() =>
        {
            var sw = Stopwatch.StartNew();
            using var pin = Weights.Pin();
            using var work = EditWork.On(this, pin.Version, settings.Layers);
            EditorFor(settings, work.Tf);
            return sw.Elapsed.TotalSeconds;
        });
    }

    /// <summary><see cref="EditAsync"/>, waiting for it.</summary>
    public EditResult Edit(IReadOnlyList<EditRequest> requests, string method, string? hparamsJson = null, CancellationToken cancel = default) =>
        EditAsync(requests, method, hparamsJson, cancel).GetAwaiter().GetResult();

    /// <summary><see cref="RevertAsync"/>, waiting for it.</summary>
    public RevertResult Revert(long editId, CancellationToken cancel = default) => RevertAsync(editId, cancel).GetAwaiter().GetResult();

    /// <summary><see cref="ForecastAsync"/>, waiting for it.</summary>
    public IReadOnlyList<ForecastRow> Forecast(IReadOnlyList<EditRequest> requests, string method, string? hparamsJson = null,
        IReadOnlyList<EditRequest>? bank = null, int top = 5, CancellationToken cancel = default) =>
        ForecastAsync(requests, method, hparamsJson, bank, top, cancel).GetAwaiter().GetResult();

    /// <summary>Every edit in the journal, oldest first, reverted ones included.</summary>
    public IReadOnlyList<JournalEntry> Journal() => _folder.List();

    /// <summary>
    /// The interference monitor's dry run: the deltas these requests would make (nothing applied),
    /// and for each request and layer how far its own MLP output moves and which facts of
    /// <paramref name="bank"/> (default: the folder's requests.json, first 500) move most.
    /// </summary>
    public Task<IReadOnlyList<ForecastRow>> ForecastAsync(IReadOnlyList<EditRequest> requests, string method, string? hparamsJson = null,
        IReadOnlyList<EditRequest>? bank = null, int top = 5, CancellationToken cancel = default)
    {
        var settings = Settings(method, hparamsJson);
        if (settings.Kind.Has(EditorCapabilities.Adaptor)) throw new EditRejectedException($"method: {settings.Kind.Name} changes no weight, so there is nothing to forecast");
        bank ??= DefaultBank();
        return Write<IReadOnlyList<ForecastRow>>(() => // the editors' state is the writer's
        {
            cancel.ThrowIfCancellationRequested();
            using var pin = Weights.Pin();
            using var work = EditWork.On(this, pin.Version, settings.Layers);
            var editor = EditorFor(settings, work.Tf);
            var deltas = editor.ComputeDeltas(work.Tf, requests);
            var probes = new FactProbes(_writerTok, settings.FactToken);
            var rows = new List<ForecastRow>();
            var banks = new Dictionary<int, IReadOnlyList<BankKey>>();
            for (int i = 0; i < requests.Count; i++)
                foreach (var d in deltas)
                {
                    if (!banks.TryGetValue(d.Layer, out var keys)) banks[d.Layer] = keys = InterferenceMonitor.Bank(work.Tf, probes, bank, d.Layer);
                    string self = $"{requests[i].Subject}: {requests[i].Prompt}";
                    var f = InterferenceMonitor.Forecast(d, probes.KeyAt(work.Tf, requests[i].Prompt, requests[i].Subject, d.Layer), keys.Where(b => b.Name != self).ToArray(), top);
                    rows.Add(new ForecastRow(i, requests[i].Subject, requests[i].TargetNew, d.Layer, f.OwnChange, f.MaxDrift, f.MeanDrift, f.MostAtRisk));
                }
            return rows;
        });
    }

    private IReadOnlyList<EditRequest> DefaultBank()
    {
        string path = Path.Combine(Dir, "requests.json");
        if (!File.Exists(path)) throw new EditRejectedException($"bank: {path} not found; give the facts to protect");
        return DatasetReader.Load(path, 500);
    }

    // the new matrices of these layers (read back from the committed checkpoint: rounded as a reload would give them) and one swap
    private (WeightsVersion Version, double UploadMs, double PublishMs) PublishLayers(IEnumerable<int> layers, IBackend backend, Stopwatch sw)
    {
        long generation = _folder.Generation; // a journal read: not part of the swap
        double start = sw.Elapsed.TotalMilliseconds;
        var fresh = new Dictionary<int, Tensor>();
        foreach (int l in layers)
        {
            var h = _folder.ReadDownProjection(l);
            fresh[l] = h.F64 is not null ? backend.Weight(h.F64, h.Shape) : backend.Weight(h.F32!, h.Shape);
        }
        double uploaded = sw.Elapsed.TotalMilliseconds;
        var v = Weights.Publish(generation, fresh);
        double published = sw.Elapsed.TotalMilliseconds;
        return (v, uploaded - start, published - uploaded);
    }

    private EditorSettings Settings(string method, string? hparamsJson)
    {
        EditorKind kind;
        try { kind = Editors.Get(method); }
        catch (ArgumentException) { throw new EditRejectedException($"method: '{method}' is not an editing method (expected {Editors.Names})"); }
        if (kind.Has(EditorCapabilities.Adaptor)) throw new EditRejectedException($"method: {kind.Name} trains an adaptor beside the weights; a live model serves weight edits ({string.Join(", ", Editors.All.Where(k => !k.Has(EditorCapabilities.Adaptor)).Select(k => k.Name))})");
        string where = "hparams";
        if (hparamsJson is null)
        {
            string file = Path.Combine(Dir, kind.Name + ".json");
            if (File.Exists(file)) { hparamsJson = File.ReadAllText(file); where = $"hparams ({file})"; }
        }
        try
        {
            var s = kind.Parse(hparamsJson ?? "{}", where);
            foreach (int l in s.Layers)
                if (l < 0 || l >= Config.Layers) throw new EditRejectedException($"{where}: layer {l} is outside the model's layers 0..{Config.Layers - 1}");
            return s;
        }
        catch (ArgumentException e) { throw new EditRejectedException(e.Message); }
    }

    // one editor per (method, hparams), kept so that an editor's state (AlphaEdit's C_p, UltraEdit's moments, prepared templates) lives on
    private IEditor EditorFor(EditorSettings s, Transformer tf)
    {
        string key = s.Kind.Name + "|" + s.HparamsJson;
        if (_editors.TryGetValue(key, out var e)) return e;
        if (s.NeedsKeyStatistics) EnsureStats(s.Layers, tf);
        e = s.Create(_writerTok, l => _stats[l].Matrix);
        (e as IPreparedEditor)?.Prepare(tf);
        _folder.Reopen(e, tf);
        _editors[key] = e;
        return e;
    }

    private void EnsureStats(int[] layers, Transformer tf)
    {
        var missing = layers.Where(l => !_stats.ContainsKey(l)).ToArray();
        if (missing.Length == 0) return;
        string spec = _options.StatsCorpus ?? Path.Combine(Dir, "corpus.txt");
        if (!File.Exists(Corpus.SpecPath(spec)))
            throw new EditRejectedException($"method: needs the key statistics of layers {string.Join(",", missing)}, and there is no corpus ({Corpus.SpecPath(spec)} not found; start the host with a statistics corpus)");
        var corpus = Corpus.FromSpec(spec, _writerTok);
        string cache = _options.KeyStatsCache ?? Path.Combine(Path.GetTempPath(), "palimpsest-keystats");
        foreach (var (l, st) in KeyStatisticsCache.GetOrCompute(tf, corpus, missing, cache)) _stats[l] = st;
    }

    // a writer job: edits, reverts, forecasts and warm-ups run one at a time on the writer thread, each held by the gate for at most its budget
    private Task<T> Write<T>(Func<T> job) => _writer.RunAsync(() =>
    {
        _gate?.Arm();
        return job();
    });

    private string Answer(Transformer tf, string prompt) => new Generator(tf).GreedyText(_writerTok, prompt, 3);

    private static double Ms(Stopwatch sw)
    {
        double ms = sw.Elapsed.TotalMilliseconds;
        sw.Restart();
        return ms;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _writer.Dispose();
        _gate?.Dispose();
        lock (_idle) while (_idle.Count > 0) _idle.Pop().Dispose();
        _base.Dispose();
        _backend.Dispose();
        _folder.Dispose();
    }

    /// <summary>
    /// A decoding stream's backend instance, its Transformer over the version it last ran and one
    /// decode session of the model's whole context, restarted for every completion (scratch, cache
    /// and logits are made again only when the version changes).
    /// </summary>
    private sealed class StreamWorker(IBackend backend, bool owns) : IDisposable
    {
        private Transformer? _tf;
        private DecodeSession? _session;
        private WeightsVersion? _version;

        public IBackend Backend { get; } = backend;
        /// <summary>The stream's own thread (async completions run here, not on the pool).</summary>
        public WorkThread Thread { get; } = new("palimpsest-stream", lowPriority: false);

        public DecodeSession Session(WeightsVersion v, Model baseModel, Sampling sampling)
        {
            if (!ReferenceEquals(v, _version))
            {
                _session?.Dispose();
                _tf?.Dispose();
                _tf = new Transformer(baseModel.View(v.Params, Backend));
                _session = new DecodeSession(_tf, baseModel.Config.MaxPositions, sampling);
                _version = v;
            }
            _session!.Restart(sampling);
            return _session;
        }

        public void Dispose()
        {
            Thread.Dispose();
            _session?.Dispose();
            _tf?.Dispose();
            if (owns) Backend.Dispose();
        }
    }

    /// <summary>
    /// The edit computation's own view of a version: its backend instance, and private copies of the
    /// matrices of the layers it edits (MEMIT adds each layer's delta in place while it computes the
    /// next layer's keys; the copies keep that away from the version being served).
    /// </summary>
    private sealed class EditWork : IDisposable
    {
        private readonly List<Tensor> _copies = [];
        private readonly bool _ownsBackend;
        private readonly SemaphoreSlim? _exclusive;

        private EditWork(IBackend backend, bool owns, SemaphoreSlim? exclusive) { Backend = backend; _ownsBackend = owns; _exclusive = exclusive; }

        public IBackend Backend { get; }
        public Transformer Tf { get; private set; } = null!;

        public static EditWork On(LiveModel host, WeightsVersion v, int[] layers)
        {
            bool siblings = host._backend is ISiblingBackend;
            host._exclusive?.Wait();
            var w = new EditWork(siblings ? ((ISiblingBackend)host._backend).CreateSibling(Math.Max(1, host._options.EditThreads)) : host._backend, siblings, host._exclusive);
            if (host._gate is not null && w.Backend is IGatedBackend gated) gated.Gate = host._gate;
            var p = v.Params.Map((_, t) => t);
            foreach (int l in layers.Distinct())
            {
                var src = p.Blocks[l].WDown;
                var h = new double[src.Length];
                w.Backend.ToHost(src, h);
                var copy = w.Backend.Weight(h, src.Shape);
                w._copies.Add(copy);
                p.Blocks[l].WDown = copy;
            }
            w.Tf = new Transformer(host._base.View(p, w.Backend));
            return w;
        }

        public void Dispose()
        {
            Tf.Dispose();
            foreach (var t in _copies) t.Dispose();
            if (_ownsBackend) Backend.Dispose();
            _exclusive?.Release();
        }
    }
}
