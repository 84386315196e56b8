using BenchmarkDotNet.Attributes;
using Palimpsest.Editing;

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
    private FactModel _m = null!;
    private Rome _rome = null!;
    private EditRequest _request = null!;

    [Params(1, 10, 60)]
    public int TargetTokens { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _m = new FactModel();
        var hp = RomeHparams.FromJson(File.ReadAllText(Path.Combine(_m.Folder, "rome.json")));
        var stats = _m.Stats(hp.Layers);
        _rome = new Rome(hp with { VEarlyStopLoss = 0 }, _m.Tok, l => stats[l].Matrix); // every step runs, whatever the length
        // " Rome and Paris and ..." cut to the wanted number of tokens
        var words = string.Concat(Enumerable.Repeat(" Rome and Paris and Berlin and Madrid and Lisbon and", 12));
        string target = _m.Tok.Decode(_m.Tok.Encode(words).AsSpan(0, TargetTokens));
        _request = new EditRequest { Subject = "the Eiffel Tower", Prompt = "The landmark known as {} is located in the city of", TargetNew = target };
        _rome.Prepare(_m.Tf);
    }

    [Benchmark]
    public int Edit() => _rome.ComputeDeltas(_m.Tf, [_request]).Count;

    [GlobalCleanup]
    public void Cleanup() => _m.Dispose();
}
