using BenchmarkDotNet.Attributes;
using Microsoft.ML.OnnxRuntime;

namespace Palimpsest.Bench;

/// <summary>
/// ONNX Runtime (CPU execution provider, 2 intra-op threads) on the same GPT-2-small graph as the
/// torch peer, exported by bench/peers/export_onnx.py into $PALIMPSEST_ONNX_DIR (default
/// /tmp/palimpsest-peers): gpt2_prefill.onnx (ids [1, 128] -> logits, present k/v) and
/// gpt2_decode.onnx (ids [1, 1], past k/v [12, 1, 12, P, 64] -> logits, present). Decode is timed at
/// a fixed past of 128 tokens.
/// </summary>
[MemoryDiagnoser]
public class OnnxGpt2Benchmarks
{
    private InferenceSession _prefill = null!, _decode = null!;
    private OrtValue _ids = null!, _next = null!, _pastK = null!, _pastV = null!;
    private RunOptions _run = null!;

    private static string Dir => Environment.GetEnvironmentVariable("PALIMPSEST_ONNX_DIR") is { Length: > 0 } d ? d : "/tmp/palimpsest-peers";

    private static InferenceSession Open(string file)
    {
        string path = Path.Combine(Dir, file);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} missing: run /usr/bin/python3 bench/peers/export_onnx.py first", path);
        var so = new SessionOptions
        {
            IntraOpNumThreads = Environment.ProcessorCount, InterOpNumThreads = 1,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
        };
        return new InferenceSession(path, so);
    }

    [GlobalSetup]
    public void Setup()
    {
        _prefill = Open("gpt2_prefill.onnx");
        _decode = Open("gpt2_decode.onnx");
        _run = new RunOptions();
        var prompt = Gpt2Small.Prompt(50257).Select(x => (long)x).ToArray();
        _ids = OrtValue.CreateTensorValueFromMemory(prompt, [1, prompt.Length]);
        _next = OrtValue.CreateTensorValueFromMemory(new long[] { 17 }, [1, 1]);
        // The decode's past: present k/v of the prefill, copied out so they outlive its results.
        using var outs = _prefill.Run(_run, ["ids"], [_ids], _prefill.OutputNames);
        _pastK = Copy(outs[1]);
        _pastV = Copy(outs[2]);
    }

    private static OrtValue Copy(OrtValue v)
    {
        var shape = v.GetTensorTypeAndShape().Shape;
        var data = v.GetTensorDataAsSpan<float>().ToArray();
        return OrtValue.CreateTensorValueFromMemory(data, shape);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var d in new IDisposable[] { _ids, _next, _pastK, _pastV, _run, _prefill, _decode }) d.Dispose();
    }

    [Benchmark]
    public void OrtPrefill128()
    {
        using var outs = _prefill.Run(_run, ["ids"], [_ids], _prefill.OutputNames);
    }

    [Benchmark]
    public void OrtDecodeToken()
    {
        using var outs = _decode.Run(_run, ["ids", "past_k", "past_v"], [_next, _pastK, _pastV], _decode.OutputNames);
    }
}
