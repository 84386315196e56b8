using System.Text;

namespace Palimpsest.Cli;

/// <summary>
/// A plain-text table: a header, a dashed rule, and aligned rows, with no trailing spaces and no
/// box-drawing characters, so it reads the same in a terminal, a pipe, a log file and a test.
/// </summary>
internal sealed class TextTable(params (string Header, bool RightAlign)[] columns)
{
    private readonly List<string[]> _rows = [];

    public void Add(params string[] cells)
    {
        if (cells.Length != columns.Length) throw new ArgumentException($"{cells.Length} cells for {columns.Length} columns");
        _rows.Add(cells);
    }

    public void WriteTo(TextWriter w)
    {
        var widths = new int[columns.Length];
        for (int c = 0; c < columns.Length; c++)
            widths[c] = Math.Max(columns[c].Header.Length, _rows.Count == 0 ? 0 : _rows.Max(r => r[c].Length));
        w.WriteLine(Line(columns.Select(c => c.Header).ToArray(), widths));
        w.WriteLine(string.Join("  ", widths.Select(n => new string('-', n))));
        foreach (var r in _rows) w.WriteLine(Line(r, widths));
    }

    private string Line(string[] cells, int[] widths)
    {
        var sb = new StringBuilder();
        for (int c = 0; c < cells.Length; c++)
        {
            if (c > 0) sb.Append("  ");
            sb.Append(columns[c].RightAlign ? cells[c].PadLeft(widths[c]) : cells[c].PadRight(widths[c]));
        }
        return sb.ToString().TrimEnd();
    }
}
