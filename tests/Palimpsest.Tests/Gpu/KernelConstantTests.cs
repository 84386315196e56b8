using System.Text.RegularExpressions;
using Palimpsest.Backends;
using Palimpsest.Backends.Cuda;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// The constants the CUDA launchers share with the kernels, against the #defines they copy: a
/// launcher computes grids, shared-memory sizes and codes from its C# constant, the kernel indexes
/// with its #define, and the two must agree. Reads kernels/*.cu and the .cuh files they include;
/// no GPU needed.
/// </summary>
public partial class KernelConstantTests
{
    /// <summary>Each pair: the C# constant, the kernel file, a C expression over its #defines, the C# value.</summary>
    public static TheoryData<string, string, string, long> Pairs() => new()
    {
        { "CudaBackend.Block", "common.cuh", "BLOCK", CudaBackend.Block },
        { "CudaBackend.Block (gemv_xw's block)", "gemv.cu", "32 * GEMV_ROWS", CudaBackend.Block },
        { "CudaBackend.GemvCols", "gemv.cu", "GEMV_COLS", CudaBackend.GemvCols },
        { "CudaBackend.TransposeTile", "gemv.cu", "TRANSPOSE_TILE", CudaBackend.TransposeTile },
        { "CudaBackend.Block (transpose_u16's block)", "gemv.cu", "TRANSPOSE_TILE * TRANSPOSE_ROWS", CudaBackend.Block },
        { "CudaBackend.AttQt", "attention.cu", "ATT_QT", CudaBackend.AttQt },
        { "CudaBackend.AttKt", "attention.cu", "ATT_KT", CudaBackend.AttKt },
        { "CudaBackend.AttThreads", "attention.cu", "32 * ATT_WARPS", CudaBackend.AttThreads },
        { "CudaBackend.AttMaxHeadDim", "attention.cu", "32 * ATT_MAXC", CudaBackend.AttMaxHeadDim },
        { "CudaBackend.AttRowsPerBlock", "attention.cu", "ATT_ROWS_PER_BLOCK", CudaBackend.AttRowsPerBlock },
        { "CudaBackend.DTypeCode(F32)", "common.cuh", "DT_F32", CudaBackend.DTypeCode(DType.F32) },
        { "CudaBackend.DTypeCode(F16)", "common.cuh", "DT_F16", CudaBackend.DTypeCode(DType.F16) },
        { "CudaBackend.DTypeCode(BF16)", "common.cuh", "DT_BF16", CudaBackend.DTypeCode(DType.BF16) },
        { "Activation.GeluTanh", "activation_fns.cuh", "ACT_GELU_TANH", (int)Activation.GeluTanh },
        { "Activation.GeluErf", "activation_fns.cuh", "ACT_GELU_ERF", (int)Activation.GeluErf },
        { "Activation.Relu", "activation_fns.cuh", "ACT_RELU", (int)Activation.Relu },
        { "Activation.Silu", "activation_fns.cuh", "ACT_SILU", (int)Activation.Silu },
    };

    [Theory, MemberData(nameof(Pairs))]
    public void The_launchers_constant_equals_the_kernels_define(string constant, string file, string expression, long value)
    {
        var defines = Defines(file);
        long expected = new Evaluator(expression, defines, file).Value();
        Assert.True(value == expected, $"{constant} is {value}, kernels/{file} has {expression} = {expected}: change one to match the other");
    }

    [Fact]
    public void Every_activation_has_its_define()
    {
        // a new Activation needs its ACT_ code in activation_fns.cuh (and a pair above)
        var pairs = Pairs().Select(r => (string)((ITheoryDataRow)r).GetData()[0]!).ToHashSet();
        foreach (var a in Enum.GetValues<Activation>()) Assert.Contains($"Activation.{a}", pairs);
    }

    [Fact]
    public void The_evaluator_reads_nested_defines_and_fails_on_what_it_cannot()
    {
        var d = new Dictionary<string, string> { ["A"] = "(B * 2)", ["B"] = "3", ["F"] = "0.5f" };
        Assert.Equal(13, new Evaluator("A * 2 + 1", d, "x").Value());
        Assert.Equal(-2, new Evaluator("(1 - B) / 1", d, "x").Value());
        Assert.Throws<InvalidDataException>(() => new Evaluator("F", d, "x").Value());
        Assert.Throws<InvalidDataException>(() => new Evaluator("MISSING", d, "x").Value());
    }

    [GeneratedRegex(@"^\s*#\s*define\s+([A-Za-z_]\w*)(?!\()(?:\s+(.*))?$")]
    private static partial Regex DefineLine();

    [GeneratedRegex(@"^\s*#\s*include\s+""([^""]+)""")]
    private static partial Regex IncludeLine();

    // The object-like #defines of kernels/FILE and of the files it includes (comments stripped).
    private static Dictionary<string, string> Defines(string file)
    {
        var defines = new Dictionary<string, string>();
        var seen = new HashSet<string>();
        void Read(string f)
        {
            if (!seen.Add(f)) return;
            foreach (var line in File.ReadAllLines(Path.Combine(Paths.RepoRoot, "kernels", f)))
            {
                if (IncludeLine().Match(line) is { Success: true } inc) { Read(inc.Groups[1].Value); continue; }
                if (DefineLine().Match(line) is not { Success: true } m) continue;
                var body = m.Groups[2].Value;
                int comment = body.IndexOf("//", StringComparison.Ordinal);
                defines[m.Groups[1].Value] = (comment >= 0 ? body[..comment] : body).Trim();
            }
        }
        Read(file);
        return defines;
    }

    /// <summary>Integer C expressions of literals, #define names, + - * / and parentheses.</summary>
    private sealed partial class Evaluator(string text, IReadOnlyDictionary<string, string> defines, string file)
    {
        [GeneratedRegex(@"\s*(\d+[uUlL]*|[A-Za-z_]\w*|[-+*/()])")]
        private static partial Regex Token();

        private readonly List<string> _tokens = Tokens(text, file);
        private int _at;

        private static List<string> Tokens(string text, string file)
        {
            var tokens = new List<string>();
            int at = 0;
            while (at < text.Length && text[at..].Trim().Length > 0)
            {
                var m = Token().Match(text, at);
                if (!m.Success || m.Index != at) throw new InvalidDataException($"kernels/{file}: cannot read \"{text}\" as an integer expression");
                tokens.Add(m.Groups[1].Value);
                at += m.Length;
            }
            return tokens;
        }

        public long Value()
        {
            long v = Sum();
            if (_at != _tokens.Count) throw new InvalidDataException($"kernels/{file}: \"{text}\" has more after {_tokens[_at - 1]}");
            return v;
        }

        private long Sum()
        {
            long v = Product();
            while (_at < _tokens.Count && _tokens[_at] is "+" or "-") v = _tokens[_at++] == "+" ? v + Product() : v - Product();
            return v;
        }

        private long Product()
        {
            long v = Unit();
            while (_at < _tokens.Count && _tokens[_at] is "*" or "/") v = _tokens[_at++] == "*" ? v * Unit() : v / Unit();
            return v;
        }

        private long Unit()
        {
            if (_at >= _tokens.Count) throw new InvalidDataException($"kernels/{file}: \"{text}\" ends early");
            var t = _tokens[_at++];
            if (t == "(") { long v = Sum(); Expect(")"); return v; }
            if (t == "-") return -Unit();
            if (char.IsDigit(t[0])) return long.Parse(t.TrimEnd('u', 'U', 'l', 'L'));
            if (char.IsLetter(t[0]) || t[0] == '_')
                return defines.TryGetValue(t, out var body) ? new Evaluator(body, defines, file).Value()
                    : throw new InvalidDataException($"kernels/{file}: no #define {t}");
            throw new InvalidDataException($"kernels/{file}: unexpected {t} in \"{text}\"");
        }

        private void Expect(string t)
        {
            if (_at >= _tokens.Count || _tokens[_at++] != t) throw new InvalidDataException($"kernels/{file}: \"{text}\" lacks {t}");
        }
    }
}
