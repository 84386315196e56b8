using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;

namespace Palimpsest.Bench;

/// <summary>
/// ./build.sh bench -- --filter '*Gemm*'   (any BenchmarkDotNet switch works after --);
/// ./build.sh bench -- scale MODEL         (one model at its real size, see <see cref="ScaleRun"/>);
/// ./build.sh bench -- versus [ROUNDS]     (GPT-2 small against ONNX Runtime, interleaved, see <see cref="VersusRun"/>).
/// Default job: 1 launch, 3 warm-up and 7 measured iterations; medians and minima reported, plus
/// GFLOP/s for benchmarks whose parameter names a GEMM shape.
/// </summary>
public static class Program
{
    public static int Main(string[] args)
    {
        // build.sh forwards "-- --filter ..." verbatim, so dotnet run hands us the second "--".
        if (args.Length > 0 && args[0] == "--") args = args[1..];
        if (args.Length > 0 && args[0] == "scale") return ScaleRun.Run(args[1..]);
        if (args.Length > 0 && args[0] == "versus") return VersusRun.Run(args[1..]);
        var job = Job.Default.WithLaunchCount(1).WithWarmupCount(3).WithIterationCount(7).WithId("Short7");
        var config = DefaultConfig.Instance
            .AddJob(job)
            .AddColumn(StatisticColumn.Median, StatisticColumn.Min)
            .AddColumn(new GflopsColumn(), new GflopsColumn(best: true))
            .WithOptions(ConfigOptions.JoinSummary);
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
        return summaries.Any(s => s.HasCriticalValidationErrors) ? 1 : 0;
    }
}
