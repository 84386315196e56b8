using System.Globalization;
using Palimpsest.Backends.Cuda;
using Palimpsest.Cuda.Interop;
using Palimpsest.GpuBench;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

// GPU benchmark of the engine on GPT2-XL-shaped random weights (48 layers, d 1600, 25 heads,
// d_ff 6400, vocab 50257, 1024 positions), timed with CUDA events. Writes engine.json for
// bench/gpu/combine.py. Usage: Palimpsest.GpuBench [--out DIR] [--layers N] [--no-solve]
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
string outDir = ".";
int layers = 48;
bool solve = true;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--out": outDir = args[++i]; break;
        case "--layers": layers = int.Parse(args[++i]); break;
        case "--no-solve": solve = false; break;
        default: Console.Error.WriteLine($"unknown argument {args[i]}"); return 2;
    }
}

var probe = Cuda.Probe();
if (!probe.Available) { Console.Error.WriteLine(probe.Reason); return 3; }
Console.WriteLine($"device: {probe}");
var results = new Dictionary<string, double>();
void Report(string key, double ms)
{
    results[key] = ms;
    Console.WriteLine($"{key,-40} {ms,10:F3} ms");
    WriteJson(); // after every number: a later failure or timeout loses nothing
}

// Each section on its own: one failing (a missing library, out of memory) does not stop the others.
void Section(string name, Action body)
{
    try { body(); }
    catch (Exception e) { Console.WriteLine($"{name} FAILED: {e.GetType().Name}: {e.Message}"); }
}

void WriteJson()
{
    // Written by hand: reflection-based serialisation does not survive trimming.
    var lines = results.Select(kv => $"    {Q(kv.Key)}: {kv.Value.ToString("R", CultureInfo.InvariantCulture)}");
    Directory.CreateDirectory(outDir);
    File.WriteAllText(Path.Combine(outDir, "engine.json"),
        $"{{\n  \"device\": {Q(probe.ToString())},\n  \"results_ms\": {{\n{string.Join(",\n", lines)}\n  }}\n}}\n");
}

var rng = new Random(5);
int[] Ids(int n) => Enumerable.Range(0, n).Select(_ => rng.Next(50257)).ToArray();

// Ceilings: a large float32 product (TF32 off) and a device-to-device copy.
Section("ceilings", () =>
{
    using var b = new CudaBackend();
    const int n = 4096;
    using var x = b.Zeros(n, n);
    using var y = b.Zeros(n, n);
    using var z = b.Zeros(n, n);
    b.FillUniform(x, 1, 1f); b.FillUniform(y, 2, 1f);
    double ms = Timing.MedianMs(() => b.MatMul(x, false, y, false, z), 5);
    Report("sgemm 4096^3 (ms)", ms);
    results["sgemm 4096^3 TFLOP/s"] = 2.0 * n * n * n / (ms * 1e-3) / 1e12;
    Console.WriteLine($"  = {results["sgemm 4096^3 TFLOP/s"]:F1} TFLOP/s");
    using var big = b.Zeros(256, 1 << 20);
    using var big2 = b.Zeros(256, 1 << 20);
    b.FillUniform(big, 3, 1f);
    ms = Timing.MedianMs(() => b.CopyRows(big, 0, big2, 0, 256), 5);
    results["copy GB/s"] = 2.0 * big.Length * 4 / (ms * 1e-3) / 1e9;
    Console.WriteLine($"copy 1 GiB d2d: {results["copy GB/s"]:F0} GB/s (read + write)");
});

var config = Gpt2Xl.Config(layers);
// fp32 (IEEE, TF32 off), fp16 weights, and fp32 with TF32 tensor cores allowed (forwards and the
// ROME edit only: what an edit costs when the products may round their inputs to 10 mantissa bits)
foreach (var (storage, tf32) in new[] { (DType.F32, false), (DType.F16, false), (DType.F32, true) }) Section($"gpt2-xl {storage}{(tf32 ? " tf32" : "")}", () =>
{
    string tag = tf32 ? "tf32" : storage == DType.F32 ? "fp32" : "fp16";
    using var b = new CudaBackend(storage, allowTf32: tf32);
    var t0 = DateTime.UtcNow;
    using var model = Gpt2Xl.Create(config, b);
    Console.WriteLine($"{tag}: {config.Layers} layers, weights ready in {(DateTime.UtcNow - t0).TotalSeconds:F1} s");
    using var tf = new Transformer(model);

    // First, while the backend's buffer cache is empty: the op timing captures graphs, which
    // need their temporaries cached, and a full cache (4 GiB) frees them instead.
    if (storage == DType.F32 && !tf32) Section($"{tag} backward ops", () =>
    {
        // the ops of a v* step's backward at about its packed size (21 prompts of ~14 tokens)
        foreach (var (name, perLayer, us) in OpTimes.Measure(b, model, 300, backward: true).Where(o => o.Name.Contains("bwd") || o.Name.Contains("probs")))
        {
            results[$"op us {tag} {name}"] = us;
            Console.WriteLine($"  {tag} {name,-48} {us,8:F2} us");
        }
    });

    var ids128 = Ids(128);
    Report($"{tag} forward 1x128", Timing.MedianMs(() => { using var r = tf.Forward(ids128); }, 5));
    // The same forward captured once as a CUDA graph and replayed: the device time without the
    // host's per-op launch cost (a server with a fixed prompt length could run it this way).
    if (!tf32) Section($"{tag} forward graph", () =>
    {
        using (tf.Forward(ids128)) { } // every buffer of the forward is in the cache
        ForwardResult? captured = null;
        using (var graph = b.Capture(() => captured = tf.Forward(ids128)))
            Report($"{tag} forward 1x128, CUDA graph replay", Timing.MedianMs(graph.Launch, 5));
        captured?.Dispose();
        // the same without IFusedLinear (separate bias, activation and residual kernels): run 6's forward
        Unfused(tf, b, () =>
        {
            using (tf.Forward(ids128)) { }
            ForwardResult? c2 = null;
            using (var graph = b.Capture(() => c2 = tf.Forward(ids128)))
                Report($"{tag} forward 1x128, CUDA graph replay, unfused (not counted)", Timing.MedianMs(graph.Launch, 5));
            c2?.Dispose();
        });
    });

    // 10x32: the ten sequences packed into one forward (Segments; PyTorch runs one [10, 32] batch),
    // and one after another as before packing existed
    var seqs = Enumerable.Range(0, 10).Select(_ => Ids(32)).ToArray();
    var packedIds = seqs.SelectMany(s => s).ToArray();
    var packedSegs = seqs.Select(s => s.Length).ToArray();
    Report($"{tag} forward 10x32", Timing.MedianMs(() => { using var r = tf.Forward(packedIds, new ForwardOptions { Segments = packedSegs }); }, 5));
    Report($"{tag} forward 10x32, one sequence at a time", Timing.MedianMs(() => { foreach (var s in seqs) { using var r = tf.Forward(s); } }, 3));

    if (!tf32) Section($"{tag} forward ops", () =>
    {
        // where a 1x128 forward's device time goes, op by op
        double sum = 0;
        foreach (var (name, perLayer, us) in OpTimes.Measure(b, model, 128))
        {
            int n = perLayer == 0 ? 1 : Math.Max(0, perLayer) * config.Layers; // -1: a comparison, not part of the forward
            sum += n * us;
            results[$"op us {tag} {name}"] = us;
            Console.WriteLine($"  {tag} {name,-44} {us,8:F2} us  x{n,-4} = {n * us / 1000,7:F3} ms per forward");
        }
        Report($"{tag} forward 1x128: sum of per-op device times (graph)", sum / 1000);
    });

    // Decode: prefill 32 tokens, then 64 single-token steps through the KV cache.
    if (!tf32)
    using (var cache = new KvCache(model, 128))
    {
        var steps = Ids(64);
        double ms = Timing.MedianMs(() =>
        {
            cache.Reset();
            using (tf.Forward(seqs[0], null, cache)) { }
            foreach (var id in steps) { using var r = tf.Forward([id], null, cache); }
        }, 3);
        cache.Reset();
        double prefill = Timing.MedianMs(() => { cache.Reset(); using var r = tf.Forward(seqs[0], null, cache); }, 3);
        Report($"{tag} decode ms/token", (ms - prefill) / steps.Length);

        // Host time to queue the same steps (nothing waits for the device inside a step): when it
        // is close to the device time above, decoding is bound by launch overhead, not the GPU.
        cache.Reset();
        using (tf.Forward(seqs[0], null, cache)) { }
        b.Synchronize();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        foreach (var id in steps) { using var r = tf.Forward([id], null, cache); }
        double hostMs = sw.Elapsed.TotalMilliseconds / steps.Length;
        b.Synchronize();
        Report($"{tag} decode host-side ms/token (queueing only)", hostMs);

        // The same step as a CUDA graph: the step at position 32 captured once and replayed. It
        // shows what decoding costs once the host no longer issues every op (the Transformer
        // would have to capture per position, or read the position from device memory).
        Section($"{tag} graph", () =>
        {
            // the step at position 32, recorded after one uncaptured run (which caches its buffers);
            // inspect gets the replayable graph, then the recording is freed
            void Replayed(Action<CudaGraph> inspect)
            {
                cache.Reset();
                using (tf.Forward(seqs[0], null, cache)) { }
                using (tf.Forward([steps[0]], null, cache)) { }
                cache.Reset();
                using (tf.Forward(seqs[0], null, cache)) { }
                ForwardResult? captured = null;
                using (var graph = b.Capture(() => captured = tf.Forward([steps[0]], null, cache))) inspect(graph);
                captured?.Dispose();
            }
            double PerStep(CudaGraph graph) => Timing.MedianMs(() => { for (int i = 0; i < steps.Length; i++) graph.Launch(); }, 3) / steps.Length;
            Replayed(graph =>
            {
                Report($"{tag} decode ms/token, CUDA graph replay", PerStep(graph));
                b.Synchronize();
                var hsw = System.Diagnostics.Stopwatch.StartNew();
                for (int i = 0; i < steps.Length; i++) graph.Launch();
                Report($"{tag} decode host-side ms/token, CUDA graph replay", hsw.Elapsed.TotalMilliseconds / steps.Length);
                b.Synchronize();
            });
            // the same step with the one-row products on the weights as stored (gemv_xw), no twins
            b.TransposedWeightCopies = false;
            try { Replayed(graph => Report($"{tag} decode ms/token, CUDA graph replay, no weight twins (not counted)", PerStep(graph))); }
            finally { b.TransposedWeightCopies = true; }
            // the same step unfused, its one-row products through cuBLAS: run 6's decode step
            Unfused(tf, b, () => Replayed(graph => Report($"{tag} decode ms/token, CUDA graph replay, unfused cuBLAS (not counted)", PerStep(graph))));
        });

        Section($"{tag} decode ops", () =>
        {
            double sum = 0;
            foreach (var (name, perLayer, us) in OpTimes.Measure(b, model, 1))
            {
                int n = perLayer == 0 ? 1 : Math.Max(0, perLayer) * config.Layers;
                sum += n * us;
                results[$"op us {tag} {name}"] = us;
                Console.WriteLine($"  {tag} {name,-44} {us,8:F2} us  x{n,-4} = {n * us / 1000,7:F3} ms per step");
            }
            Console.WriteLine($"  {tag} sum over one decode step's ops: {sum / 1000:F3} ms");
            Report($"{tag} decode: sum of per-op device times (graph)", sum / 1000);
        });
    }

    if (storage == DType.F32 && !tf32)
    {
        // Forward + backward to every weight, 10 sequences of 32 packed into one pass, next-token loss.
        var grads = model.ZerosLikeParams();
        try
        {
            var targets = seqs.SelectMany(s => s.Skip(1).Append(-1)).ToArray();
            Report($"{tag} forward+backward 10x32", Timing.MedianMs(() =>
            {
                using var r = tf.Forward(packedIds, new ForwardOptions { KeepForBackward = true, Segments = packedSegs });
                using var dl = b.Zeros(r.Logits.Shape);
                b.CrossEntropy(r.Logits, targets, dl);
                tf.Backward(r, dl, null, grads);
            }, 3));
        }
        finally
        {
            foreach (var (_, g) in grads.Named()) g.Dispose();
        }
    }

    {
        // One ROME edit at layer 17: a warm-up edit generates the 20 context templates (kept by
        // the editor, as across a run of edits) and JIT-compiles; then edits with 2 and 5 v* steps,
        // whose difference gives the time of one v* step (every rewriting prompt + the KL prompt,
        // forward and backward to δ).
        Section($"{tag} rome", () =>
        {
            foreach (int steps in new[] { 2, 5 })
            {
                var rome = RomeEdit.Editor(tf, steps);
                var (warm, _, _) = RomeEdit.Time(tf, rome, steps); // templates + first use of each shape
                var (ms, ran, prompts) = RomeEdit.Time(tf, rome, steps);
                Console.WriteLine($"  ROME {ran} v* steps ({prompts} prompts per step): {ms:F1} ms (first edit, with template generation: {warm:F1} ms)");
                results[$"{tag} rome edit {steps} steps"] = ms;
            }
            double step = (results[$"{tag} rome edit 5 steps"] - results[$"{tag} rome edit 2 steps"]) / 3;
            Report($"{tag} ROME v* step (22 prompts fwd+bwd)", step);
            Report($"{tag} one ROME edit, 5 v* steps (wall)", results[$"{tag} rome edit 5 steps"]);
            Report($"{tag} one ROME edit, 20 v* steps (5 + 15 x step)", results[$"{tag} rome edit 5 steps"] + 15 * step);
        });
    }
});

if (solve)
{
    foreach (int keys in new[] { 100, 1000, 10000 }) Section($"solve {keys}", () =>
    {
        var (ms, info) = MemitSolve.Run(6400, keys, 1600, 3);
        Report($"fp64 solve (KK^T+C)X=R dff 6400, {keys} keys, 1600 rhs", ms);
        if (info != 0) Console.WriteLine($"  potrf/potrs info = {info} (not positive definite?)");
    });
}

WriteJson();
return 0;

static string Q(string s) => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";

// Runs body with the forward unfused (no IFusedLinear, one-row products through cuBLAS), then restores both.
static void Unfused(Transformer tf, CudaBackend b, Action body)
{
    tf.UseFusedLinear = false;
    b.UseGemv = false;
    try { body(); }
    finally { tf.UseFusedLinear = true; b.UseGemv = true; }
}
