using System.CommandLine;
using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Backends.Cuda;
using Palimpsest.Cuda.Interop;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Cli.Commands;

/// <summary>
/// `palimpsest validate MODEL [--backend cuda|cpu-f32] [--dtype fp32|fp16|bf16] [--tokens N] [--seed S]`:
/// runs the float64 reference and a fast backend on the same random tokens and prints, per hidden
/// state and for the logits, the relative L2 error, the max abs and max rel error, and whether it is
/// inside the tolerance (fp32 1e-4, fp16 / bf16 weights 1e-2). Exit 0 when all are inside, 3 when not.
/// </summary>
internal static class ValidateCommand
{
    public const int OutOfTolerance = 3;

    public static Command Create(CliIo io)
    {
        var model = CommonOptions.Model();
        var backend = new Option<string>("--backend") { Description = "the backend to check against the float64 reference (default: cuda where there is a GPU, else cpu-f32)" };
        backend.AcceptOnlyFromAmong("cuda", "cpu-f32");
        var dtype = new Option<string>("--dtype") { Description = "weight storage on CUDA: fp32, fp16 or bf16", DefaultValueFactory = _ => "fp32" };
        dtype.AcceptOnlyFromAmong("fp32", "fp16", "bf16");
        var tokens = new Option<int>("--tokens") { Description = "random tokens per sequence (default 32, capped at the context)", DefaultValueFactory = _ => 32 };
        var seed = new Option<int>("--seed") { Description = "seed of the random tokens", DefaultValueFactory = _ => 1 };
        var cmd = new Command("validate", "compare a fast backend with the float64 reference, layer by layer") { model, backend, dtype, tokens, seed };
        cmd.SetAction(pr =>
        {
            // what the machine has, unless asked: a GPU-less machine validates its CPU backend
            string folder = pr.GetValue(model)!, dt = pr.GetValue(dtype)!;
            string which = pr.GetValue(backend) ?? (global::Palimpsest.Cuda.Interop.Cuda.Probe().Available ? "cuda" : "cpu-f32");
            int n = CommonOptions.Positive(pr.GetValue(tokens), "--tokens");
            if (which == "cpu-f32" && dt != "fp32") throw new CliUsageException("--dtype fp16/bf16 applies to --backend cuda only");
            var (config, host) = ModelLoader.LoadHost(folder);
            using IBackend fast = which == "cuda" ? OpenCuda(dt) : new SimdBackend();
            using var refBackend = new ReferenceBackend();
            using var refModel = Model.FromHost(config, host, refBackend);
            using var fastModel = Model.FromHost(config, host, fast);
            int T = Math.Min(n, config.MaxPositions);
            var rng = new Random(pr.GetValue(seed));
            var ids = Enumerable.Range(0, T).Select(_ => rng.Next(config.Vocab)).ToArray();
            var options = new ForwardOptions { CaptureHidden = true };
            using var rtf = new Transformer(refModel);
            using var ftf = new Transformer(fastModel);
            using var r = rtf.Forward(ids, options);
            using var f = ftf.Forward(ids, options);
            double tol = dt == "fp32" ? 1e-4 : 1e-2;
            io.Out.WriteLine($"{folder}: {config.ModelType}, {config.Layers} layers, {T} random tokens (seed {pr.GetValue(seed)}); {fast.Name} vs cpu-f64, tolerance {tol:0e0} (relative L2)");
            io.Out.WriteLine($"{"tensor",-12} {"rel L2",10} {"max abs",10} {"max rel",10}  ok");
            bool all = true;
            void Row(string name, Tensor a, Tensor b)
            {
                var x = new double[a.Length]; fast.ToHost(a, x);
                var y = new double[b.Length]; refBackend.ToHost(b, y);
                double num = 0, den = 0, maxAbs = 0, maxRef = 0;
                for (int i = 0; i < x.Length; i++)
                {
                    double e = x[i] - y[i];
                    num += e * e; den += y[i] * y[i];
                    maxAbs = Math.Max(maxAbs, Math.Abs(e)); maxRef = Math.Max(maxRef, Math.Abs(y[i]));
                }
                double rel = Math.Sqrt(num) / Math.Max(Math.Sqrt(den), 1e-300), maxRel = maxAbs / Math.Max(maxRef, 1e-300);
                bool ok = rel <= tol;
                all &= ok;
                io.Out.WriteLine($"{name,-12} {rel,10:E2} {maxAbs,10:E2} {maxRel,10:E2}  {(ok ? "yes" : "NO")}");
            }
            // hidden[0] = embeddings, hidden[l] = output of block l − 1, the last block's raw output, then after the final norm
            for (int l = 0; l < config.Layers; l++)
                Row(l == 0 ? "embeddings" : $"block {l - 1}", f.Hidden![l], r.Hidden![l]);
            Row($"block {config.Layers - 1}", f.FinalResidual!, r.FinalResidual!);
            Row("final norm", f.Hidden![config.Layers], r.Hidden![config.Layers]);
            Row("logits", f.Logits, r.Logits);
            io.Out.WriteLine(all ? "all inside tolerance" : "OUT OF TOLERANCE");
            return all ? CliErrors.Ok : OutOfTolerance;
        });
        return cmd;
    }

    private static IBackend OpenCuda(string dtype)
    {
        var storage = dtype switch { "fp16" => DType.F16, "bf16" => DType.BF16, _ => DType.F32 };
        try { return new CudaBackend(storage); }
        catch (CudaUnavailableException e) { throw new CliUsageException($"--backend cuda: {e.Message} (validate the CPU backend with --backend cpu-f32)"); }
    }
}
