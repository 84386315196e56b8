using System.Diagnostics;

namespace Palimpsest.Cli.Parity;

/// <summary>
/// The official ROME/MEMIT code (kmeng01/memit, unchanged, where the user keeps it) and the Python
/// that runs it through bench/peers/official/run_official.py: found, checked, and run on a work
/// folder the engine has filled (see <see cref="ParityExport"/>).
/// </summary>
internal sealed record OfficialPeer(string Python, string Harness, string OfficialDir)
{
    /// <summary>What the Python side needs (Debian packages; transformers and datasets are stood in for).</summary>
    public const string AptLine = "apt-get install python3-torch libopenblas0-pthread python3-numpy python3-yaml python3-tqdm python3-regex python3-matplotlib";

    /// <summary>The default place of the official code: ../shared/peers/official-memit beside the repository.</summary>
    public const string DefaultOfficialDir = "../shared/peers/official-memit";

    /// <summary>
    /// Finds the harness (bench/peers/official above the working directory or the CLI's own folder),
    /// checks the official folder and that the Python imports torch, numpy, yaml and regex; each
    /// failure is one line naming the option and what to do.
    /// </summary>
    public static OfficialPeer Locate(string? python, string officialDir)
    {
        foreach (var f in new[] { "rome/compute_v.py", "rome/compute_u.py", "memit/memit_main.py", "util/nethook.py", "globals.yml" })
            if (!File.Exists(Path.Combine(officialDir, f)))
                throw new CliUsageException($"--official {officialDir}: has no {f} (give the folder of the official ROME/MEMIT code, kmeng01/memit, as ../shared/peers/official-memit holds it)");
        string harness = FindHarness() ?? throw new CliUsageException(
            "cannot find bench/peers/official/run_official.py above the working directory or the CLI's folder: run palimpsest parity from the repository");
        python ??= File.Exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
        var (code, _, err) = Run(python, ["-c", "import torch, numpy, yaml, regex"], Directory.GetCurrentDirectory(), TimeSpan.FromMinutes(2));
        if (code != 0)
            throw new CliUsageException($"--python {python}: cannot import torch, numpy, yaml and regex ({LastLine(err)}); install them with: {AptLine}");
        return new OfficialPeer(python, harness, Path.GetFullPath(officialDir));
    }

    /// <summary>True when <see cref="Locate"/> would succeed (the test suite runs a small parity case only then).</summary>
    public static string? WhyUnavailable(string officialDir)
    {
        try { Locate(null, officialDir); return null; }
        catch (CliUsageException e) { return e.Message; }
    }

    /// <summary>Runs run_official.py on <paramref name="work"/>; its output goes to work/official.log. Throws with the log's last line on failure.</summary>
    public double RunOn(string work, int threads)
    {
        var sw = Stopwatch.StartNew();
        var (code, output, err) = Run(Python, [Path.Combine(Harness, "run_official.py"), work, OfficialDir], work, TimeSpan.FromMinutes(30),
            ("PARITY_THREADS", threads.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        string log = Path.Combine(work, "official.log");
        File.WriteAllText(log, output + err);
        if (code != 0) throw new CliUsageException($"the official code failed (exit {code}): {LastLine(err)} (whole output in {log})");
        return sw.Elapsed.TotalSeconds;
    }

    private static string? FindHarness()
    {
        foreach (var start in new[] { Directory.GetCurrentDirectory(), AppContext.BaseDirectory })
            for (var d = new DirectoryInfo(start); d is not null; d = d.Parent)
            {
                string h = Path.Combine(d.FullName, "bench", "peers", "official");
                if (File.Exists(Path.Combine(h, "run_official.py"))) return h;
            }
        return null;
    }

    private static string LastLine(string s) => s.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault() ?? "no output";

    private static (int Code, string Out, string Err) Run(string file, string[] args, string cwd, TimeSpan limit, params (string, string)[] env)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = cwd };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (k, v) in env) psi.Environment[k] = v;
        Process p;
        try { p = Process.Start(psi) ?? throw new CliUsageException($"--python {file}: could not be started"); }
        catch (System.ComponentModel.Win32Exception e) { throw new CliUsageException($"--python {file}: cannot be run ({e.Message}); install the Python side with: {AptLine}"); }
        using (p)
        {
            var stdout = p.StandardOutput.ReadToEndAsync();
            var stderr = p.StandardError.ReadToEndAsync();
            if (!p.WaitForExit(limit))
            {
                p.Kill(entireProcessTree: true);
                throw new CliUsageException($"{file} {string.Join(' ', args)}: still running after {limit.TotalMinutes:0} minutes; stopped");
            }
            return (p.ExitCode, stdout.Result, stderr.Result);
        }
    }
}
