using System.Reflection;
using Palimpsest.Backends.Cuda;
using Palimpsest.Cuda.Interop;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// The kernel launchers (KernelLaunchers.cs) against the PTX of kernels/*.cu, without a GPU: every
/// launcher passes what its .entry takes (count; each parameter's size and float-ness), every
/// entry has a launcher, and every launcher forwards its parameters in order. The first is the
/// check CudaBackend runs when it loads the modules on a device; here it runs in CI.
/// </summary>
public class KernelSignatureTests
{
    [Theory, MemberData(nameof(KernelPtxFreshnessTests.Kernels), MemberType = typeof(KernelPtxFreshnessTests))]
    public void Every_launcher_passes_what_its_ptx_entry_takes(string module)
    {
        var ptx = KernelModules.Ptx(module); // the PTX the library embeds (KernelPtxFreshnessTests: = kernels/ptx)
        var entries = PtxEntries.Parse(System.Text.Encoding.UTF8.GetString(ptx), KernelModules.PtxFile(module));
        Assert.NotEmpty(entries);
        var errors = KernelSignatures.Mismatches(KernelModules.Launchers(module), KernelModules.PtxFile(module), entries);
        Assert.True(errors.Count == 0, string.Join("\n", errors));
        KernelModules.CheckLaunchers(module, ptx); // what a device runs at module load: must not throw either
    }

    [Fact]
    public void Every_kernel_source_has_its_ptx_and_launchers()
    {
        var sources = Directory.GetFiles(Path.Combine(Paths.RepoRoot, "kernels"), "*.cu").Select(Path.GetFileNameWithoutExtension).Order();
        Assert.Equal(sources, KernelModules.Names.Order());
        foreach (var name in KernelModules.Names)
            Assert.True(KernelModules.Launchers(name).IsSubclassOf(typeof(KernelSet)), $"{name}: {KernelModules.Launchers(name).Name} is no KernelSet");
    }

    /// <summary>A launcher's recorded call: entry, grid and arguments.</summary>
    private sealed class Recorder : IKernelLauncher
    {
        public readonly List<(string Entry, KernelGrid Grid, KArg[] Args)> Calls = [];
        public void Launch(string entry, in KernelGrid grid, ReadOnlySpan<KArg> args) => Calls.Add((entry, grid, args.ToArray()));
        public void AllowSharedBytes(string entry, int bytes) { }
    }

    // A distinct value per parameter position and type, negative so that a narrowed or widened copy
    // (int passed for a long) has other bits than the value itself.
    private static (object Value, long Bits) Sentinel(Type t, int i)
    {
        if (t == typeof(int)) { int v = -1001 - i; return (v, ((KArg)v).Bits); }
        if (t == typeof(long)) { long v = -(1L << 40) - i; return (v, ((KArg)v).Bits); }
        if (t == typeof(ulong)) { ulong v = 0xD000_0000_0000_0000UL + (ulong)i; return (v, ((KArg)v).Bits); }
        if (t == typeof(float)) { float v = -1.5f - i; return (v, ((KArg)v).Bits); }
        throw new ArgumentException($"no sentinel for {t.Name}");
    }

    [Theory, MemberData(nameof(KernelPtxFreshnessTests.Kernels), MemberType = typeof(KernelPtxFreshnessTests))]
    public void Every_launcher_forwards_its_grid_and_parameters_in_order(string module)
    {
        var type = KernelModules.Launchers(module);
        var recorder = new Recorder();
        var set = Activator.CreateInstance(type, recorder)!;
        var grid = new KernelGrid(7, 5, 3, 96, 1024, 42);
        foreach (var m in type.GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly).Where(m => !m.IsSpecialName))
        {
            var ps = m.GetParameters();
            int g = Array.FindIndex(ps, p => p.ParameterType == typeof(KernelGrid).MakeByRefType());
            var sentinels = ps[(g + 1)..].Select((p, i) => Sentinel(p.ParameterType, i)).ToArray();
            // a selector (before the grid) is one enum: every value of it
            object?[][] selectors = g == 0 ? [[]] : [.. Enum.GetValues(Assert.Single(ps[..g]).ParameterType).Cast<object>().Select(v => new object?[] { v })];
            var launched = new HashSet<string>();
            foreach (var selector in selectors)
            {
                recorder.Calls.Clear();
                m.Invoke(set, [.. selector, grid, .. sentinels.Select(s => s.Value)]);
                var call = Assert.Single(recorder.Calls);
                Assert.True(call.Grid == grid, $"{type.Name}.{m.Name} launches {call.Grid}, not the grid it was given");
                Assert.True(call.Args.Length == sentinels.Length, $"{type.Name}.{m.Name} passes {call.Args.Length} arguments for its {sentinels.Length} parameters");
                for (int i = 0; i < sentinels.Length; i++)
                    Assert.True(call.Args[i].Bits == sentinels[i].Bits,
                        $"{type.Name}.{m.Name} argument {i} is 0x{call.Args[i].Bits:X16}, not its parameter {ps[g + 1 + i].Name} (0x{sentinels[i].Bits:X16})");
                launched.Add(call.Entry);
            }
            var entries = m.GetCustomAttribute<KernelEntriesAttribute>()?.Entries ?? [m.Name];
            Assert.Equal(entries.Order(), launched.Order());
        }
    }

    /// <summary>Launchers with the mistakes the check exists for, against elementwise.ptx.</summary>
    private sealed class WrongLaunchers(IKernelLauncher t) : KernelSet(t)
    {
        public void add_f32(in KernelGrid at, ulong a, ulong b, ulong dst, int n) => Launch(nameof(add_f32), at, a, b, dst, n);        // n is long long
        public void axpy_f32(in KernelGrid at, int alpha, ulong src, ulong dst, long n) => Launch(nameof(axpy_f32), at, alpha, src, dst, n); // alpha is float
        public void add_bias_f32(in KernelGrid at, ulong x, ulong bias, int dtype, long rows) => Launch(nameof(add_bias_f32), at, x, bias, dtype, rows); // no cols
        public void get_row_f32(in KernelGrid at, ulong x, ulong dst, int row, int d, int accumulate, int extra) =>
            Launch(nameof(get_row_f32), at, x, dst, row, d, accumulate, extra);
        public void add_f64(in KernelGrid at, ulong a) => Launch(nameof(add_f64), at, a);
    }

    [Fact]
    public void A_wrong_launcher_fails_with_a_line_naming_the_kernel_parameter_and_what_the_ptx_expects()
    {
        const string file = "kernels/ptx/elementwise.ptx";
        var entries = PtxEntries.Parse(System.Text.Encoding.UTF8.GetString(KernelModules.Ptx("elementwise")), file);
        var errors = KernelSignatures.Mismatches(typeof(WrongLaunchers), file, entries);
        Assert.Contains($"{file}: add_f32 parameter 3: the PTX expects .u64 (8-byte integer), WrongLaunchers.add_f32 passes n as int (4-byte integer)", errors);
        Assert.Contains($"{file}: axpy_f32 parameter 0: the PTX expects .f32 (4-byte float), WrongLaunchers.axpy_f32 passes alpha as int (4-byte integer)", errors);
        Assert.Contains($"{file}: add_bias_f32 parameter 4: the PTX expects .u32 (4-byte integer), WrongLaunchers.add_bias_f32 passes nothing (4 of 5)", errors);
        Assert.Contains($"{file}: get_row_f32 parameter 5: the PTX expects none (it takes 5), WrongLaunchers.get_row_f32 passes extra and 6 in all", errors);
        Assert.Contains($"{file}: no entry add_f64 (launched by WrongLaunchers.add_f64)", errors);
        Assert.Contains($"{file}: entry sum_rows_f32 has no launcher in WrongLaunchers", errors);
        Assert.DoesNotContain(errors, e => e.Contains("sum_rows_f32 parameter"));

        // at module load: one line, the first mismatch and how many more
        var e = Assert.Throws<InvalidOperationException>(() =>
            KernelSignatures.Verify(typeof(WrongLaunchers), file, System.Text.Encoding.UTF8.GetString(KernelModules.Ptx("elementwise"))));
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(errors[0], e.Message);
        Assert.EndsWith($"(and {errors.Count - 1} more mismatches)", e.Message);
    }

    [Fact]
    public void The_ptx_parser_reads_sizes_types_arrays_and_empty_lists()
    {
        const string ptx = """
            .visible .entry k0()
            {
            	ret;
            }
            .visible .entry k1(
            	.param .u64 k1_param_0,
            	.param .f32 k1_param_1,
            	.param .align 8 .b8 k1_param_2[24],
            	.param .s32 k1_param_3
            )
            {
            	ret;
            }
            """;
        var entries = PtxEntries.Parse(ptx, "test.ptx");
        Assert.Empty(entries["k0"]);
        Assert.Equal([new PtxParam(".u64", 8, false), new PtxParam(".f32", 4, true), new PtxParam(".b8[24]", 24, false), new PtxParam(".s32", 4, false)], entries["k1"]);

        var e = Assert.Throws<InvalidDataException>(() => PtxEntries.Parse(".entry bad(\n\t.param .q32 k_param_0\n)", "test.ptx"));
        Assert.Equal("test.ptx: bad parameter 0: no scalar type in \".param .q32 k_param_0\"", e.Message);
    }
}
