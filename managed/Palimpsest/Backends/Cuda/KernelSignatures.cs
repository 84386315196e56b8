using System.Diagnostics.CodeAnalysis;
using System.Reflection;

namespace Palimpsest.Backends.Cuda;

/// <summary>
/// Compares the launchers of a <see cref="KernelSet"/> with the .entry parameter lists of its PTX:
/// every launcher's entries exist and take the parameters it passes (count, and for each its size
/// and whether it is a float), and every entry has a launcher. KernelModules runs this before it
/// loads a module on the device; KernelSignatureTests runs it over every module without one. A
/// kernel launched with a wrong argument list reads garbage or faults; here it is one line instead.
/// </summary>
internal static class KernelSignatures
{
    // What a launcher's C# parameter puts in the kernel's parameter space (see KArg's conversions).
    private static PtxParam? Passes(Type t) =>
        t == typeof(int) ? new PtxParam("int", 4, false)
        : t == typeof(long) ? new PtxParam("long", 8, false)
        : t == typeof(ulong) ? new PtxParam("ulong", 8, false)
        : t == typeof(float) ? new PtxParam("float", 4, true)
        : null;

    /// <summary>One line per mismatch between <paramref name="launchers"/> and <paramref name="entries"/> (the PTX of <paramref name="file"/>); empty when they agree.</summary>
    public static List<string> Mismatches([DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicMethods)] Type launchers,
        string file, IReadOnlyDictionary<string, PtxParam[]> entries)
    {
        var errors = new List<string>();
        var launched = new HashSet<string>();
        foreach (var method in launchers.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly))
        {
            if (method.IsSpecialName) continue;
            string who = $"{launchers.Name}.{method.Name}";
            var ps = method.GetParameters();
            int grid = Array.FindIndex(ps, p => p.ParameterType == typeof(KernelGrid).MakeByRefType());
            var listed = method.GetCustomAttribute<KernelEntriesAttribute>()?.Entries;
            if (grid < 0 || (grid > 0 && listed is null))
            {
                errors.Add($"{who}: a launcher takes (in KernelGrid, the entry's parameters...), with a selector before the grid only under [KernelEntries]");
                continue;
            }
            var passed = ps[(grid + 1)..];
            foreach (var entry in listed ?? [method.Name])
            {
                launched.Add(entry);
                if (!entries.TryGetValue(entry, out var expected))
                {
                    errors.Add($"{file}: no entry {entry} (launched by {who})");
                    continue;
                }
                Compare(errors, file, entry, expected, who, passed);
            }
        }
        foreach (var entry in entries.Keys)
            if (!launched.Contains(entry)) errors.Add($"{file}: entry {entry} has no launcher in {launchers.Name}");
        return errors;
    }

    // The parameters one launcher passes to one entry: a line for each of a different size or kind, and one for a count mismatch.
    private static void Compare(List<string> errors, string file, string entry, PtxParam[] expected, string who, ParameterInfo[] passed)
    {
        for (int i = 0; i < Math.Min(expected.Length, passed.Length); i++)
        {
            var p = passed[i];
            var pass = Passes(p.ParameterType);
            if (pass is not { } a)
                errors.Add($"{file}: {entry} parameter {i}: {who} passes {p.Name} as {p.ParameterType.Name}, which no kernel argument carries (int, long, ulong, float)");
            else if (a.Bytes != expected[i].Bytes || a.IsFloat != expected[i].IsFloat)
                errors.Add($"{file}: {entry} parameter {i}: the PTX expects {expected[i]}, {who} passes {p.Name} as {a}");
        }
        if (passed.Length > expected.Length)
            errors.Add($"{file}: {entry} parameter {expected.Length}: the PTX expects none (it takes {expected.Length}), {who} passes {passed[expected.Length].Name} and {passed.Length} in all");
        else if (passed.Length < expected.Length)
            errors.Add($"{file}: {entry} parameter {passed.Length}: the PTX expects {expected[passed.Length]}, {who} passes nothing ({passed.Length} of {expected.Length})");
    }

    /// <summary>Throws one line (the first mismatch, and how many more) unless <paramref name="launchers"/> agree with the PTX <paramref name="ptx"/>.</summary>
    public static void Verify([DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicMethods)] Type launchers, string file, string ptx)
    {
        var errors = Mismatches(launchers, file, PtxEntries.Parse(ptx, file));
        if (errors.Count > 0)
            throw new InvalidOperationException(errors[0] + (errors.Count > 1 ? $" (and {errors.Count - 1} more mismatches)" : ""));
    }
}
