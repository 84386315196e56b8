using Palimpsest.Backends;
using Palimpsest.Backends.Cpu;
using Palimpsest.Backends.Cuda;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;
using Palimpsest.Tokenization;
using Palimpsest.Tests.Editing;

namespace Palimpsest.Tests.Gpu;

/// <summary>
/// Editing on the GPU gives the CPU's deltas: UltraEdit (keys and every row's value gradient from
/// one forward and backward, the normaliser, the ridge solve) and MEMIT (z*, keys, the spread) on
/// CudaBackend with float32 weights against the float32 CPU backend, same random weights.
/// </summary>
[Trait(Gpu.Trait, Gpu.TraitValue)]
[Collection(Palimpsest.Tests.Gpu.CudaCollection.Name)]
public class CudaEditorParityTests
{
    private static ModelConfig Config() => EditingFixtures.Gpt2Vocab(4, 160, 5, 640, 64);

    private static double[][] Deltas(IBackend backend, ParamSet<HostTensor> weights, Func<ITextTokenizer, IEditor> make)
    {
        var c = Config();
        using var model = Model.FromHost(c, weights, backend);
        using var tf = new Transformer(model);
        return make(TokenizerFactory.Gpt2(c)).ComputeDeltas(tf, EditingFixtures.Requests).Select(d => d.ToDense()).ToArray();
    }

    private static void AssertSame(Func<ITextTokenizer, IEditor> make, double tol, string what)
    {
        Gpu.SkipIfUnavailable();
        var weights = RandomWeights.Create(Config(), 31, 0.1);
        var cpu = Deltas(new SimdBackend(), weights, make);
        double[][] gpu;
        using (var b = new CudaBackend(DType.F32)) gpu = Deltas(b, weights, make);
        Assert.Equal(cpu.Length, gpu.Length);
        for (int i = 0; i < cpu.Length; i++) Num.AssertClose(gpu[i], cpu[i], tol, $"{what}: ΔW {i} cuda vs cpu-f32");
    }

    [Fact]
    public void Ultraedit_on_cuda_gives_the_cpu_deltas() =>
        AssertSame(tok => new UltraEdit(new UltraEditHparams { Layers = [1, 3], Lr = 1e-3, BatchSize = 2 }, tok), 1e-4, "UltraEdit");

    [Fact]
    public void Memit_on_cuda_gives_the_cpu_deltas()
    {
        var cm = EditingFixtures.RandomSpd(Config().DFf, 5);
        AssertSame(tok => new Memit(new MemitHparams { Layers = [1, 2], VLossLayer = 3, VNumGradSteps = 5, Mom2UpdateWeight = 10 }, tok, _ => cm), 1e-4, "MEMIT");
    }
}
