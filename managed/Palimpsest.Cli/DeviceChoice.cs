using System.CommandLine;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Backends.Cuda;
using Palimpsest.Cuda.Interop;
using Palimpsest.Tensors;

namespace Palimpsest.Cli;

/// <summary>
/// Where a command runs the model: --device cpu (the float32 SIMD backend, or the float64 reference
/// with f64) or cuda (the GPU, weights stored as --dtype fp32, fp16 or bf16). One place creates the
/// backend for every command that loads a model, so "no CUDA device" reads the same everywhere.
/// </summary>
internal sealed record DeviceChoice(string Device = "cpu", string Dtype = "fp32", bool F64 = false, CpuWeights Weights = CpuWeights.Auto)
{
    public static readonly DeviceChoice Cpu = new();

    public bool Cuda => Device == "cuda";

    /// <summary>The --dtype option (CUDA weight storage).</summary>
    public static Option<string> DtypeOption()
    {
        var o = new Option<string>("--dtype") { Description = "with --device cuda: how the weights are stored on the GPU (fp32, fp16 or bf16; compute is float32)", DefaultValueFactory = _ => "fp32" };
        o.AcceptOnlyFromAmong("fp32", "fp16", "bf16");
        return o;
    }

    /// <summary>--device and --dtype as one choice; a dtype other than fp32 without cuda is a usage error.</summary>
    public static DeviceChoice Read(ParseResult pr, Option<string> device, Option<string> dtype, Option<string>? weights = null)
    {
        var c = new DeviceChoice(pr.GetValue(device)!, pr.GetValue(dtype)!, Weights: weights is null ? CpuWeights.Auto : CommonOptions.ParseWeights(pr.GetValue(weights)!));
        if (!c.Cuda && c.Dtype != "fp32") throw new CliUsageException($"--dtype {c.Dtype}: weights are stored narrow on the GPU only (give --device cuda)");
        return c;
    }

    /// <summary>Fails now, with one line, when the device is not there (before a command creates anything).</summary>
    public void Check()
    {
        if (!Cuda) return;
        var probe = global::Palimpsest.Cuda.Interop.Cuda.Probe();
        if (!probe.Available) throw new CliUsageException($"--device cuda: {probe.Reason} (run on the CPU with --device cpu)");
    }

    public IBackend CreateBackend()
    {
        if (!Cuda) return F64 ? new ReferenceBackend() : new SimdBackend(weights: Weights);
        var storage = Dtype switch { "fp16" => DType.F16, "bf16" => DType.BF16, _ => DType.F32 };
        try { return new CudaBackend(storage); }
        catch (CudaUnavailableException e) { throw new CliUsageException($"--device cuda: {e.Message} (run on the CPU with --device cpu)"); }
    }

    public override string ToString() => Cuda ? $"cuda ({Dtype} weights)" : F64 ? "cpu (float64)" : "cpu (float32)";
}
