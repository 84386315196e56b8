using Spectre.Console;

namespace Palimpsest.Cli;

/// <summary>A long command's progress (fraction done, in [0, 1]) and the lines it says on the way.</summary>
internal interface IProgressLines : IProgress<double>
{
    /// <summary>One line on stderr (above the bar while one is shown).</summary>
    void Line(string text);
}

/// <summary>
/// Progress of a long command on stderr: a Spectre.Console bar (percentage, elapsed, remaining) when
/// stderr is the process's terminal; when it is redirected (a log, a test's writer) only the
/// command's own lines, so that logs stay plain text.
/// </summary>
internal static class CliProgress
{
    /// <summary>Stderr is this process's terminal: a live bar can be drawn there.</summary>
    public static bool Live(CliIo io) => ReferenceEquals(io.Err, Console.Error) && !Console.IsErrorRedirected;

    /// <summary>Runs work with a live bar on stderr when it is a terminal, else with plain lines on io.Err.</summary>
    public static T Run<T>(CliIo io, string description, Func<IProgressLines, T> work) =>
        Live(io)
            ? Run(AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) }), description, work)
            : work(new PlainLines(io.Err));

    /// <summary>
    /// Runs work with a bar drawn on <paramref name="console"/>. autoRefresh: redraw from a timer
    /// thread (a terminal); tests turn it off, as a string writer is not safe across threads.
    /// </summary>
    internal static T Run<T>(IAnsiConsole console, string description, Func<IProgressLines, T> work, bool autoRefresh = true)
    {
        T result = default!;
        console.Progress()
            .AutoRefresh(autoRefresh)
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(description), maxValue: 1.0);
                // the bar stays where the work left it: a run stopped part-way shows how far it got
                result = work(new LiveLines(console, task));
            });
        return result;
    }

    private sealed class PlainLines(TextWriter err) : IProgressLines
    {
        public void Report(double value) { }
        public void Line(string text) => err.WriteLine(text);
    }

    private sealed class LiveLines(IAnsiConsole console, ProgressTask task) : IProgressLines
    {
        public void Report(double value) => task.Value = Math.Clamp(value, 0, 1);
        public void Line(string text) => console.WriteLine(text);
    }
}
