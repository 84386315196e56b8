using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Palimpsest.Bench;

/// <summary>2·M·N·K / median time, for benchmarks with a "Shape" parameter "MxNxK" (suffix t: b transposed).</summary>
public sealed class GflopsColumn : IColumn
{
    public string Id => "GFLOPs";
    public string ColumnName => "GFLOP/s";
    public bool AlwaysShow => true;
    public ColumnCategory Category => ColumnCategory.Custom;
    public int PriorityInCategory => 0;
    public bool IsNumeric => true;
    public UnitType UnitType => UnitType.Dimensionless;
    public string Legend => "2·M·N·K / median, GEMM benchmarks only";

    public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
    public bool IsAvailable(Summary summary) => true;

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

    public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
    {
        var shape = benchmarkCase.Parameters.Items.FirstOrDefault(p => p.Name == "Shape")?.Value as string;
        var report = summary[benchmarkCase];
        if (shape is null || report?.ResultStatistics is null) return "-";
        var (m, n, k, _) = GemmShape.Parse(shape);
        double seconds = report.ResultStatistics.Median * 1e-9;
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
