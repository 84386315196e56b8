using System.Globalization;
using System.Runtime.CompilerServices;
using Palimpsest.Journal;
using static Palimpsest.Tests.Journal.JournalFixtures;

namespace Palimpsest.Tests.Journal;

/// <summary>
/// The child process of the kill tests: this test assembly re-run (`dotnet exec Palimpsest.Tests.dll`)
/// with <see cref="ModeVar"/> set. A module initializer runs before xunit's generated Main, so the
/// child does its journal work and exits without ever starting the test runner; in a normal test
/// run the variable is unset and the initializer returns at once.
/// Modes: "apply:STEP:SEED" and "revert:STEP:EDIT_ID" stop at protocol step STEP (print "AT STEP",
/// then wait to be killed); "loop:SEED" applies and reverts edits forever, printing "OP n" after each.
/// </summary>
internal static class JournalChild
{
    public const string ModeVar = "PALIMPSEST_JOURNAL_CHILD";
    public const string DirVar = "PALIMPSEST_JOURNAL_DIR";

#pragma warning disable CA2255 // a module initializer is the only hook that runs before the generated Main
    [ModuleInitializer]
    internal static void RunIfChild()
#pragma warning restore CA2255
    {
        string? mode = Environment.GetEnvironmentVariable(ModeVar);
        if (string.IsNullOrEmpty(mode)) return;
        int code = 0;
        try { Run(mode.Split(':'), Environment.GetEnvironmentVariable(DirVar)!); }
        catch (Exception e) { Console.Error.WriteLine(e); code = 3; }
        Console.Out.Flush();
        Environment.Exit(code);
    }

    private static void Run(string[] mode, string dir)
    {
        using var m = EditedModel.Open(dir);
        int arg = int.Parse(mode[^1], CultureInfo.InvariantCulture);
        switch (mode[0])
        {
            case "apply":
                m.StepHook = StopAt(mode[1]);
                m.Apply([RandomDelta(arg)], Record(arg));
                break;
            case "revert":
                m.StepHook = StopAt(mode[1]);
                m.Revert(arg);
                break;
            case "loop":
                for (int n = 0; ; n++)
                {
                    // Every third operation reverts the oldest active edit, so kills also land inside reverts.
                    var active = m.List().FirstOrDefault(e => !e.Reverted);
                    if (n % 3 == 2 && active is not null) m.Revert(active.Id);
                    else m.Apply([RandomDelta(arg + n)], Record(arg + n));
                    Console.Out.WriteLine($"OP {n}");
                    Console.Out.Flush();
                }
            default: throw new ArgumentException("unknown child mode " + string.Join(':', mode));
        }
        Console.Out.WriteLine("DONE");
    }

    private static Action<string> StopAt(string step) => s =>
    {
        if (s != step) return;
        Console.Out.WriteLine("AT " + s);
        Console.Out.Flush();
        Thread.Sleep(Timeout.Infinite);
    };
}
