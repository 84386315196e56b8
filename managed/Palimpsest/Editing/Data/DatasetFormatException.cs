namespace Palimpsest.Editing.Data;

/// <summary>
/// A dataset file that cannot be read as edit requests. The message is one line naming the file,
/// the record index (0-based; -1 for the file as a whole) and the field.
/// </summary>
public sealed class DatasetFormatException : FormatException
{
    public DatasetFormatException(string file, int record, string? field, string problem, Exception? inner = null)
        : base(Compose(file, record, field, problem), inner)
    {
        File = file; Record = record; Field = field;
    }

    public string File { get; }
    public int Record { get; }
    public string? Field { get; }

    private static string Compose(string file, int record, string? field, string problem)
    {
        string where = record < 0 ? file : $"{file}: record {record}";
        if (field is not null) where += $", field '{field}'";
        return $"{where}: {problem.ReplaceLineEndings(" ")}";
    }
}
