using System.Text.RegularExpressions;

namespace Palimpsest.Backends.Cuda;

/// <summary>One .param of a PTX .entry: its type (".u64"), size in bytes and whether it is a floating-point value.</summary>
internal readonly record struct PtxParam(string Type, int Bytes, bool IsFloat)
{
    public override string ToString() => $"{Type} ({Bytes}-byte {(IsFloat ? "float" : "integer")})";
}

/// <summary>
/// The .entry parameter lists of a PTX module, read from its text: what the driver copies into
/// the kernel's parameter space, so what a launch must pass, in order.
/// </summary>
internal static partial class PtxEntries
{
    [GeneratedRegex(@"\.entry\s+([A-Za-z_$][\w$]*)\s*\(([^)]*)\)")]
    private static partial Regex EntryPattern();

    /// <summary>Entry name -> its parameters in order. Throws naming the entry on a parameter it cannot read.</summary>
    public static IReadOnlyDictionary<string, PtxParam[]> Parse(string ptx, string file)
    {
        var entries = new Dictionary<string, PtxParam[]>();
        foreach (Match m in EntryPattern().Matches(ptx))
        {
            string name = m.Groups[1].Value;
            var decls = m.Groups[2].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var ps = new PtxParam[decls.Length];
            for (int i = 0; i < decls.Length; i++) ps[i] = Param(decls[i], file, name, i);
            if (!entries.TryAdd(name, ps)) throw new InvalidDataException($"{file}: entry {name} is declared twice");
        }
        return entries;
    }

    // ".param .u64 add_f32_param_0", ".param .align 8 .b8 s_param_2[16]" (a struct by value), ".param .u64 .ptr .global .align 4 x"
    private static PtxParam Param(string decl, string file, string entry, int index)
    {
        var tokens = decl.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
        if (tokens.Length < 3 || tokens[0] != ".param") throw new InvalidDataException($"{file}: {entry} parameter {index}: cannot read \"{decl}\"");
        (int Bytes, bool Float)? scalar = null;
        string type = "";
        for (int t = 1; t < tokens.Length - 1 && scalar is null; t++)
        {
            if (tokens[t] == ".align") { t++; continue; }
            scalar = Scalar(tokens[t]);
            type = tokens[t];
        }
        if (scalar is not { } s) throw new InvalidDataException($"{file}: {entry} parameter {index}: no scalar type in \"{decl}\"");
        // an array parameter "name[16]" holds that many elements of the type
        var last = tokens[^1];
        int open = last.IndexOf('[');
        int count = open < 0 ? 1 : int.Parse(last.AsSpan(open + 1, last.Length - open - 2));
        return new PtxParam(open < 0 ? type : $"{type}[{count}]", s.Bytes * count, s.Float);
    }

    private static (int Bytes, bool Float)? Scalar(string t) => t switch
    {
        ".u8" or ".s8" or ".b8" => (1, false),
        ".u16" or ".s16" or ".b16" => (2, false),
        ".u32" or ".s32" or ".b32" => (4, false),
        ".u64" or ".s64" or ".b64" => (8, false),
        ".f16" => (2, true),
        ".f32" => (4, true),
        ".f64" => (8, true),
        _ => null,
    };
}
