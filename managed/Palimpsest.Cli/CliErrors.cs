using Palimpsest.Models;

namespace Palimpsest.Cli;

/// <summary>A bad command line (malformed option value, conflicting options): exit code 2 like any other bad input.</summary>
public sealed class CliUsageException(string message) : Exception(message);

/// <summary>
/// Turns an exception into the CLI's single error line and exit code: 2 for inputs the user can fix
/// (bad files, bad ids, bad options), 1 for anything unexpected. No stack trace unless
/// PALIMPSEST_DEBUG=1, because a trace for "file not found" hides the one line that matters.
/// </summary>
public static class CliErrors
{
    public const int Ok = 0, Unexpected = 1, BadInput = 2;

    public static bool IsBadInput(Exception e) => e is CliUsageException or ModelFormatException or ArgumentException
        or FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException
        or Palimpsest.Editing.Data.DatasetFormatException or Palimpsest.Journal.JournalException;

    /// <summary>Writes the error line (and the trace in debug mode) to <paramref name="stderr"/>; returns the exit code.</summary>
    public static int Report(Exception e, TextWriter stderr, bool debug)
    {
        // Reflection-invoked actions may wrap the real error.
        while (e is System.Reflection.TargetInvocationException or AggregateException { InnerExceptions.Count: 1 } && e.InnerException is not null)
            e = e.InnerException;
        bool bad = IsBadInput(e);
        string msg = OneLine(e.Message);
        if (!bad) msg = $"unexpected {e.GetType().Name}: {msg}" + (debug ? "" : " (set PALIMPSEST_DEBUG=1 for details)");
        stderr.WriteLine($"palimpsest: error: {msg}");
        if (debug) stderr.WriteLine(e.ToString());
        return bad ? BadInput : Unexpected;
    }

    public static string OneLine(string s) => string.Join(' ', s.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries).Select(x => x.Trim()));
}
