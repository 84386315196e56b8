using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Palimpsest.Bench;

/// <summary>
/// 2·M·N·K / median (or / fastest) time, for benchmarks with a "Shape" parameter "MxNxK" (suffix t:
/// b transposed). The fastest iteration is reported beside the median because this machine is
/// shared: other processes steal whole time slices, and the best iteration is the one least disturbed.
/// </summary>
public sealed class GflopsColumn(bool best = false) : IColumn
{
    public string Id => best ? "GFLOPsBest" : "GFLOPs";
    public string ColumnName => best ? "GFLOP/s (min)" : "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => best ? "2·M·N·K / fastest iteration" : "2·M·N·K / median, GEMM benchmarks only";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var shape = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "Shape")?.Value as string;
        var report = summary[benchmarkCase];
        if (shape is null || report?.ResultStatistics is null) return "-";
        var (m, n, k, _) = GemmShape.Parse(shape);
        double seconds = (best ? report.ResultStatistics.Min : report.ResultStatistics.Median) * 1e-9;
        return (2.0 * m * n * k / seconds / 1e9).ToString("F1");
    }
}

/// <summary>"MxNxK" or "MxNxKt" (b stored [N, K]).</summary>
public static class GemmShape
{
    public static (int M, int N, int K, bool TransB) Parse(string s)
    {
        bool t = s.EndsWith('t');
        var p = s.TrimEnd('t').Split('x').Select(int.Parse).ToArray();
        return (p[0], p[1], p[2], t);
    }
}
