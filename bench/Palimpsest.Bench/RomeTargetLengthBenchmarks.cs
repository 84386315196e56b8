using BenchmarkDotNet.Attributes;
using Palimpsest.Backends.Cpu;
using Palimpsest.Editing;
using Palimpsest.Editing.Data;
using Palimpsest.Runtime;
using Palimpsest.Tokenization;

namespace Palimpsest.Bench;

/// <summary>
/// One ROME edit on data/models/facts-d128-l5 (its rome.json) against the target's length in tokens:
/// the rewriting prompts carry the target on their rows (one prompt per template), so the cost grows
/// linearly with the length, where one prompt per target prefix grew quadratically.
///   ./build.sh bench -- --filter '*RomeTargetLength*'
/// </summary>
[WarmupCount(1)]
[IterationCount(3)]
public class RomeTargetLengthBenchmarks
{
    private SimdBackend _backend = null!;
    private Model _model = null!;
    private Transformer _tf = null!;
    private Rome _rome = null!;
    private EditRequest _request = null!;

    [Params(1, 10, 60)]
    public int TargetTokens { get; set; }

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
        var hp = RomeHparams.FromJson(File.ReadAllText(Path.Combine(folder, "rome.json")));
        string cache = Directory.CreateTempSubdirectory("palimpsest-bench-").FullName;
        var stats = KeyStatisticsCache.GetOrCompute(_tf, Corpus.TextFile(Path.Combine(folder, "corpus.txt"), tok), hp.Layers, cache);
        Directory.Delete(cache, recursive: true);
        _rome = new Rome(hp with { VEarlyStopLoss = 0 }, tok, l => stats[l].Matrix); // every step runs, whatever the length
        // " Rome and Paris and ..." cut to the wanted number of tokens
        var words = string.Concat(Enumerable.Repeat(" Rome and Paris and Berlin and Madrid and Lisbon and", 12));
        string target = tok.Decode(tok.Encode(words).AsSpan(0, TargetTokens));
        _request = new EditRequest { Subject = "the Eiffel Tower", Prompt = "The landmark known as {} is located in the city of", TargetNew = target };
        _rome.Prepare(_tf);
    }

    [Benchmark]
    public int Edit() => _rome.ComputeDeltas(_tf, [_request]).Count;

    [GlobalCleanup]
    public void Cleanup()
    {
        _tf.Dispose();
        _model.Dispose();
        _backend.Dispose();
    }
}
