using BenchmarkDotNet.Attributes;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;

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
    private FactModel _m = null!;
    private IEditor _editor = null!;
    private IReadOnlyList<EditRequest> _batch = null!;

    [Params("rome", "memit", "alphaedit", "ultraedit")]
    public string Method { get; set; } = "";

    [Params(1, 8)]
    public int Batch { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _m = new FactModel();
        var kind = Editors.Get(Method);
        var settings = kind.Parse(File.ReadAllText(Path.Combine(_m.Folder, kind.Name + ".json")), kind.Name + ".json");
        var stats = settings.NeedsKeyStatistics ? _m.Stats(settings.Layers) : new Dictionary<int, KeyStatistics>();
        _editor = settings.Create(_m.Tok, l => stats[l].Matrix);
        _batch = DatasetReader.Load(Path.Combine(_m.Folder, "requests.json"), Batch);
        (_editor as IPreparedEditor)?.Prepare(_m.Tf);
    }

    [Benchmark]
    public int Edit()
    {
        int n = 0;
        // ROME takes one request per call: its batch of 8 is 8 edits one after another
        if (Editors.Get(Method).Has(EditorCapabilities.Batched)) n += _editor.ComputeDeltas(_m.Tf, _batch).Count;
        else foreach (var r in _batch) n += _editor.ComputeDeltas(_m.Tf, [r]).Count;
        return n;
    }

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();
}
