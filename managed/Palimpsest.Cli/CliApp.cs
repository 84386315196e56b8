using System.CommandLine;
using Palimpsest.Cli.Commands;

namespace Palimpsest.Cli;

/// <summary>
/// Entry point of the `palimpsest` command. Everything it prints goes to the writers it is given;
/// every failure ends as one `palimpsest: error: ...` line on stderr and exit code 2 (bad input) or 1.
/// </summary>
public static class CliApp
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        bool debug = Environment.GetEnvironmentVariable("PALIMPSEST_DEBUG") == "1";
        try
        {
            var root = BuildRoot(new CliIo(stdout, stderr));
            var parsed = root.Parse(args);
            if (parsed.Errors.Count > 0)
            {
                stderr.WriteLine($"palimpsest: error: {CliErrors.OneLine(string.Join("; ", parsed.Errors.Select(e => e.Message.TrimEnd('.'))))} (see palimpsest --help)");
                return CliErrors.BadInput;
            }
            return parsed.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            return CliErrors.Report(e, stderr, debug);
        }
        finally
        {
            stdout.Flush();
            stderr.Flush();
        }
    }

    internal static Command BuildRoot(CliIo io)
    {
        // A plain Command rather than RootCommand, whose name (and so every usage line) would be the
        // host assembly's: "Palimpsest.Cli", or the test runner's.
        var root = new Command("palimpsest", "run and inspect GPT-style checkpoints (Hugging Face folders)")
        {
            new System.CommandLine.Help.HelpOption(),
            new VersionOption(),
        };
        root.Subcommands.Add(InfoCommand.Create(io));
        root.Subcommands.Add(PredictCommand.Create(io));
        root.Subcommands.Add(GenerateCommand.Create(io));
        root.Subcommands.Add(RunCommand.Create(io));
        root.Subcommands.Add(TraceCommand.Create(io));
        root.Subcommands.Add(StatsCommand.Create(io));
        root.Subcommands.Add(EditCommand.Create(io));
        root.Subcommands.Add(JournalCommand.Create(io));
        root.Subcommands.Add(RevertCommand.Create(io));
        root.Subcommands.Add(ExportLoraCommand.Create(io));
        root.Subcommands.Add(EvalCommand.Create(io));
        root.Subcommands.Add(ValidateCommand.Create(io));
        root.Subcommands.Add(LifelongCommand.Create(io));
        root.Subcommands.Add(BenchEditsCommand.Create(io));
        root.Subcommands.Add(InterferenceCommand.Create(io));
        root.Subcommands.Add(TrainCommand.Create(io));
        root.Subcommands.Add(DemoCommand.Create(io));
        root.Subcommands.Add(LifelongReportCommand.Create(io));
        root.Subcommands.Add(SuperpositionCommand.Create(io));
        root.Subcommands.Add(ParityCommand.Create(io));
        root.Subcommands.Add(ServeCommand.Create(io));
        root.Subcommands.Add(RandomModelCommand.Create(io));
        return root;
    }
}

/// <summary>The writers a command prints to (the process's console, or a test's StringWriters).</summary>
internal sealed record CliIo(TextWriter Out, TextWriter Err);
