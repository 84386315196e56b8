using System.Diagnostics;
using System.Globalization;
using Palimpsest.Backends.Cpu;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Bench;

/// <summary>
/// `./build.sh bench -- scale MODEL [PROMPT_TOKENS [DECODE_TOKENS]]`: one model at its real size on the
/// CPU, measured in one process — load time, resident memory after load and while decoding
/// (anonymous and file-backed: 16-bit weights stay in the file's memory map), a prefill of
/// PROMPT_TOKENS (default 128) random ids with logits for every row, DECODE_TOKENS (default 16)
/// decode steps (median ms/token), and the floor those steps are held against: the bytes of weights
/// one step reads ÷ the rate a streaming read of 1 GiB reaches in the same process (measured right
/// after the decode). Prints one line per measurement (the bench/RESULTS.md rows are copied from it).
/// </summary>
public static class ScaleRun
{
    public static int Run(string[] args)
    {
        if (args.Length < 1) { Console.Error.WriteLine("usage: scale MODEL [PROMPT_TOKENS [DECODE_TOKENS]]"); return 2; }
        string dir = args[0];
        int promptTokens = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 128;
        int decodeTokens = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 16;
        Line("machine", $"{Environment.ProcessorCount} cores, load {File.ReadAllText("/proc/loadavg").Trim()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");

        var sw = Stopwatch.StartNew();
        using var backend = new SimdBackend();
        using var model = Model.Load(dir, backend);
        Line("load", $"{sw.Elapsed.TotalSeconds:0.00} s ({model.Config.ModelType}, {model.Config.Layers} layers, d {model.Config.DModel}, vocab {model.Config.Vocab})");
        Line("rss after load", Rss());

        // bytes one decode step reads: every matrix once, except the embedding table (one row) when the head is not tied to it
        long bytes = 0, params16 = 0, params32 = 0;
        var seen = new HashSet<Palimpsest.Tensors.Tensor>(ReferenceEqualityComparer.Instance);
        foreach (var (_, t) in model.Params.Named())
        {
            if (!seen.Add(t)) continue; // a tied head is the embedding table again
            bool embeddingOnly = !model.Config.TiedHead && ReferenceEquals(t, model.Params.Wte);
            long size = t.Length * (t.DType == DType.F32 ? 4 : t.DType == DType.F64 ? 8 : 2);
            if (t.DType == DType.F32) params32 += t.Length; else params16 += t.Length;
            if (!embeddingOnly) bytes += size;
        }
        Line("weights", $"{params16:N0} 16-bit + {params32:N0} float32 values; a decode step reads {bytes / 1e9:0.000} GB");

        var tf = new Transformer(model);
        var rng = new Random(2);
        var ids = Enumerable.Range(0, promptTokens).Select(_ => rng.Next(model.Config.Vocab)).ToArray();
        // three times: the first forward touches every weight page (read from disk unless the page cache
        // holds the file: a memory-mapped load only moves that cost here), the second runs from memory
        // and makes the float32 weights' packed copies (SimdBackend.PackedWeightBudget), the third reads them
        using (var cache = new KvCache(model, promptTokens))
            foreach (var when in new[] { "first, pages faulted in", "again, warm; packs float32 weights", "third, warm" })
            {
                cache.Reset();
                sw.Restart();
                using var r = tf.Forward(ids, null, cache);
                Line($"prefill 1x{promptTokens}", $"{sw.Elapsed.TotalMilliseconds:0} ms ({when}; logits for all {promptTokens} rows)");
            }

        Line("packed weight copies", $"{backend.PackedWeightBytes / 1e9:0.00} GB (budget {backend.PackedWeightBudget / 1e9:0.00} GB)");

        using var session = new DecodeSession(tf, promptTokens + decodeTokens + 1);
        int token = session.Prefill(ids[..Math.Min(8, ids.Length)]);
        var steps = new double[decodeTokens];
        string rssDecode = "";
        for (int i = 0; i < decodeTokens; i++)
        {
            sw.Restart();
            token = session.Step(token);
            steps[i] = sw.Elapsed.TotalMilliseconds;
            if (i == decodeTokens / 2) rssDecode = Rss();
        }
        // after the decode, so that its 1 GiB buffer is not in the resident memory reported above
        double gbps = StreamReadGBps();
        Line("stream read", $"{gbps:0.0} GB/s (1 GiB, {Environment.ProcessorCount} threads, best of 5)");
        Array.Sort(steps);
        double median = steps[decodeTokens / 2], floor = bytes / (gbps * 1e9) * 1e3;
        Line("decode", $"{median:0.0} ms/token median of {decodeTokens} (min {steps[0]:0.0}, max {steps[^1]:0.0})");
        Line("decode floor", $"{floor:0.0} ms/token = {bytes / 1e9:0.000} GB / {gbps:0.0} GB/s; decode runs at {floor / median:P0} of the floor's speed");
        Line("rss while decoding", rssDecode);
        Line("end", $"load {File.ReadAllText("/proc/loadavg").Trim()}");
        return 0;
    }

    private static void Line(string what, string value) => Console.WriteLine($"{what,-20} {value}");

    private static string Rss()
    {
        var fields = File.ReadAllLines("/proc/self/status").Where(l => l.StartsWith("VmRSS") || l.StartsWith("RssAnon") || l.StartsWith("RssFile"))
            .Select(l => l.Split(':', 2)).ToDictionary(p => p[0], p => long.Parse(p[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture) / 1024.0 / 1024.0);
        return $"{fields["VmRSS"]:0.00} GiB (anonymous {fields["RssAnon"]:0.00}, file-backed {fields["RssFile"]:0.00})";
    }

    // the streaming read's rate in this process: the best of 5 reads, after one that warms up
    private static double StreamReadGBps() => StreamRead.BestGBps(StreamRead.Allocate(), reads: 5);
}
