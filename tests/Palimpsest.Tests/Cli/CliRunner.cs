using Palimpsest.Cli;

namespace Palimpsest.Tests.Cli;

/// <summary>Runs the CLI in-process and checks the shape of its error output.</summary>
internal static class CliRunner
{
    public sealed record Result(int Code, string Out, string Err)
    {
        public string[] ErrLines => Err.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        public override string ToString() => $"exit {Code}\n--- stdout ---\n{Out}\n--- stderr ---\n{Err}";
    }

    public static Result Run(params string[] args)
    {
        var o = new StringWriter { NewLine = "\n" };
        var e = new StringWriter { NewLine = "\n" };
        int code = CliApp.Run(args, o, e);
        return new Result(code, o.ToString(), e.ToString());
    }

    public static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "fixtures", name);

    /// <summary>Exit code 2, exactly one "palimpsest: error:" line naming <paramref name="mustContain"/>, no stack trace.</summary>
    public static void AssertBadInput(Result r, params string[] mustContain)
    {
        Assert.True(r.Code == 2, $"expected exit code 2\n{r}");
        Assert.True(r.ErrLines.Length == 1, $"expected exactly one stderr line\n{r}");
        Assert.StartsWith("palimpsest: error: ", r.ErrLines[0]);
        Assert.DoesNotContain("   at ", r.Err);
        foreach (var s in mustContain) Assert.True(r.Err.Contains(s), $"stderr does not name '{s}'\n{r}");
    }
}
