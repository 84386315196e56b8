using Palimpsest.Cli;
using Spectre.Console;

namespace Palimpsest.Tests.Cli;

public class CliProgressTests
{
    /// <summary>On a terminal the work's lines and a finished bar are drawn; the work's result comes back.</summary>
    [Fact]
    public void A_live_bar_shows_the_lines_and_ends_at_100_percent()
    {
        var text = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Yes, ColorSystem = ColorSystemSupport.NoColors, Interactive = InteractionSupport.Yes, Out = new AnsiConsoleOutput(text),
        });
        int r = CliProgress.Run(console, "lifelong wilke, 4 edits", p =>
        {
            p.Report(0.5);
            p.Line("lifelong: 2 of 4 edits");
            p.Report(1.0);
            return 42;
        }, autoRefresh: false); // no timer thread writing into the StringWriter beside this one
        Assert.Equal(42, r);
        string s = text.ToString();
        Assert.Contains("lifelong: 2 of 4 edits", s);
        Assert.Contains("lifelong wilke, 4 edits", s);
        Assert.Contains("100%", s);
    }

    /// <summary>Redirected (a log, a test's writer), there is no bar: only the lines, as plain text.</summary>
    [Fact]
    public void Without_a_terminal_only_the_lines_are_written()
    {
        var err = new StringWriter();
        var io = new CliIo(new StringWriter(), err);
        Assert.False(CliProgress.Live(io));
        CliProgress.Run(io, "key statistics", p => { p.Report(0.3); p.Line("one line"); return 0; });
        Assert.Equal("one line" + Environment.NewLine, err.ToString());
    }
}
