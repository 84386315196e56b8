using BenchmarkDotNet.Attributes;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Bench;

/// <summary>
/// bench-edits' workload under BenchmarkDotNet: one batch of Batch edits (its deltas computed, not
/// applied, so every invocation edits the same weights) with each method on the committed fact
/// model data/models/facts-d128-l5, its own hparams files (rome.json, memit.json, ...), key
/// statistics of corpus.txt computed once in the setup. edits/s = Batch / mean.
///   ./build.sh bench -- --filter '*EditThroughput*'
/// </summary>
[WarmupCount(1)]
[IterationCount(5)]
public class EditThroughputBenchmarks
{
    private SimdBackend _backend = null!;
    private Model _model = null!;
    private Transformer _tf = null!;
    private IEditor _editor = null!;
    private IReadOnlyList<EditRequest> _batch = null!;

    [Params("rome", "memit", "alphaedit", "ultraedit")]
    public string Method { get; set; } = "";

    [Params(1, 8)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Engine.sln"))) dir = dir.Parent;
        string folder = Path.Combine(dir?.FullName ?? throw new InvalidOperationException("Engine.sln not found"), "data", "models", "facts-d128-l5");
        _backend = new SimdBackend();
        _model = Model.Load(folder, _backend);
        _tf = new Transformer(_model);
        var tok = TokenizerFactory.ForModel(folder, _model.Config);
        var kind = Editors.Get(Method);
        var settings = kind.Parse(File.ReadAllText(Path.Combine(folder, kind.Name + ".json")), kind.Name + ".json");
        IReadOnlyDictionary<int, KeyStatistics> stats = new Dictionary<int, KeyStatistics>();
        if (settings.NeedsKeyStatistics)
        {
            string cache = Directory.CreateTempSubdirectory("palimpsest-bench-").FullName;
            stats = KeyStatisticsCache.GetOrCompute(_tf, Corpus.TextFile(Path.Combine(folder, "corpus.txt"), tok), settings.Layers, cache);
            Directory.Delete(cache, recursive: true);
        }
        _editor = settings.Create(tok, l => stats[l].Matrix);
        _batch = DatasetReader.Load(Path.Combine(folder, "requests.json"), Batch);
        (_editor as IPreparedEditor)?.Prepare(_tf);
    }

    [Benchmark]
    public int Edit()
    {
        int n = 0;
        // ROME takes one request per call: its batch of 8 is 8 edits one after another
        if (Editors.Get(Method).Has(EditorCapabilities.Batched)) n += _editor.ComputeDeltas(_tf, _batch).Count;
        else foreach (var r in _batch) n += _editor.ComputeDeltas(_tf, [r]).Count;
        return n;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _tf.Dispose();
        _model.Dispose();
        _backend.Dispose();
    }
}
