using Spectre.Console;

namespace Palimpsest.Cli;

/// <summary>Spectre.Console writing plain text (no colours, no cursor codes) to a given writer, so output can be piped and tested.</summary>
internal static class CliConsole
{
    public static IAnsiConsole For(TextWriter writer)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        // Redirected output has no width; a fixed one keeps tables from wrapping differently per terminal.
        console.Profile.Width = 120;
        return console;
    }
}
