using System.Diagnostics;
using System.Globalization;

namespace Palimpsest.Bench;

/// <summary>
/// `./build.sh bench -- versus [ROUNDS]`: the GPT-2-small contenders of <see cref="Gpt2PrefillBenchmarks"/>,
/// <see cref="Gpt2DecodeBenchmarks"/>, <see cref="Gpt2Bf16DecodeBenchmarks"/> and <see cref="OnnxGpt2Benchmarks"/>
/// interleaved in one process, with <see cref="StreamRead"/> beside them. BenchmarkDotNet runs one
/// benchmark after another, and this machine's memory bandwidth and clock drift by ±15 % over
/// minutes, so a ratio of two of its medians also measures the drift. Here each round times every
/// contender once, after 200 ms of idle cores, in an order that alternates round by round (engine first, then ONNX Runtime first),
/// so drift lands on both sides of each ratio; the ratio reported is the median over rounds of each
/// round's own ratio, beside the medians and minima. Same work as the BenchmarkDotNet classes (it
/// calls them): a prefill is 1×128 with logits for all 128 rows; a decode is 32 steps, reported per token.
/// </summary>
public static class VersusRun
{
    /// <summary>Pause before each timed contender, so that threads the previous one left spinning have parked.</summary>
    private const int QuietMs = 200;

    public static int Run(string[] args)
    {
        int rounds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 15;
        Console.WriteLine($"machine: {Environment.ProcessorCount} cores, load {File.ReadAllText("/proc/loadavg").Trim()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        var prefill = new Gpt2PrefillBenchmarks();
        var decode = new Gpt2DecodeBenchmarks();
        var bf16 = new Gpt2Bf16DecodeBenchmarks();
        var ort = new OnnxGpt2Benchmarks();
        prefill.Setup();
        decode.Setup();
        bf16.Setup();
        ort.Setup();
        var stream = StreamRead.Allocate();
        try
        {
            var contenders = new (string Name, Func<double> Time)[]
            {
                ("engine prefill", () => Ms(prefill.Prefill128)),
                ("ORT prefill", () => Ms(ort.OrtPrefill128)),
                ("engine decode f32", () => DecodeMs(decode)),
                ("ORT decode f32", () => OrtDecodeMs(ort)),
                ("engine decode bf16", () => DecodeMs(bf16)),
                ("stream read 1 GiB", () => Ms(() => { StreamRead.Sum(stream); })),
            };
            foreach (var c in contenders) { c.Time(); c.Time(); } // warm-up: JIT tiers, packed copies, thread pools
            var times = contenders.Select(_ => new List<double>()).ToArray();
            for (int r = 0; r < rounds; r++)
            {
                var order = Enumerable.Range(0, contenders.Length).ToArray();
                if (r % 2 == 1) (order[0], order[1], order[2], order[3]) = (order[1], order[0], order[3], order[2]);
                foreach (int i in order)
                {
                    // ONNX Runtime's pool threads spin on after a run; a contender started at once shares the
                    // cores with them (the engine's prefill right after ORT's read 190–238 ms, right after the
                    // streaming read 164–175, in one run). Each starts from idle cores.
                    Thread.Sleep(QuietMs);
                    times[i].Add(contenders[i].Time());
                }
                Console.WriteLine($"round {r + 1,2}: " + string.Join("  ", contenders.Select((c, i) => $"{c.Name} {times[i][^1]:0.00}")));
            }
            Console.WriteLine($"load after: {File.ReadAllText("/proc/loadavg").Trim()}");
            for (int i = 0; i < contenders.Length; i++)
                Console.WriteLine($"{contenders[i].Name,-20} median {Median(times[i]):0.00} ms  min {times[i].Min():0.00} ms");
            double gbps = StreamRead.Floats * 4.0 / Median(times[5]) / 1e6;
            Console.WriteLine($"stream read: {gbps:0.0} GB/s (median)");
            Ratio("prefill engine / ORT", times[0], times[1]);
            Ratio("decode f32 engine / ORT", times[2], times[3]);
            Ratio("decode bf16 engine / ORT f32", times[4], times[3]);
            return 0;
        }
        finally
        {
            prefill.Cleanup();
            decode.Cleanup();
            bf16.Cleanup();
            ort.Cleanup();
        }
    }

    private static double Ms(Action a)
    {
        var sw = Stopwatch.StartNew();
        a();
        return sw.Elapsed.TotalMilliseconds;
    }

    /// <summary>ms per token over the 32 steps of one <see cref="Gpt2DecodeBenchmarks.DecodeToken"/> (its prefill untimed).</summary>
    private static double DecodeMs(Gpt2DecodeBenchmarks d)
    {
        d.Prefill();
        try
        {
            var sw = Stopwatch.StartNew();
            d.DecodeToken();
            return sw.Elapsed.TotalMilliseconds / Gpt2Small.DecodeTokens;
        }
        finally { d.Close(); }
    }

    /// <summary>ms per token over 32 of ONNX Runtime's decode steps.</summary>
    private static double OrtDecodeMs(OnnxGpt2Benchmarks o)
    {
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < Gpt2Small.DecodeTokens; i++) o.OrtDecodeToken();
        return sw.Elapsed.TotalMilliseconds / Gpt2Small.DecodeTokens;
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    private static void Ratio(string name, List<double> a, List<double> b)
    {
        var perRound = a.Zip(b, (x, y) => x / y).ToList();
        Console.WriteLine($"{name}: {Median(perRound):0.000} (median of per-round ratios; range {perRound.Min():0.000}–{perRound.Max():0.000}; " +
                          $"medians {Median(a) / Median(b):0.000}, minima {a.Min() / b.Min():0.000})");
    }
}
