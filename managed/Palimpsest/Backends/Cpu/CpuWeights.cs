using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>How <see cref="SimdBackend"/> stores a checkpoint's weight matrices (vectors are always float32).</summary>
public enum CpuWeights
{
    /// <summary>As the file has them: bf16/fp16 matrices stay 16-bit (the memory map itself); float32/float64 files load as <see cref="F32"/> does, but tensor by tensor (one host copy at a time).</summary>
    Auto,
    /// <summary>Every weight widened to a float32 copy (the path every checkpoint took before 16-bit storage).</summary>
    F32,
    /// <summary>Every matrix bf16: mapped where the file stores bf16, else rounded once at load into a 16-bit copy.</summary>
    BF16,
    /// <summary>Every matrix fp16: mapped where the file stores fp16, else rounded once at load into a 16-bit copy.</summary>
    F16,
}

/// <summary>
/// A checkpoint's tensors taken straight from its safetensors files as <see cref="SimdBackend"/>
/// tensors: each 16-bit matrix becomes a <see cref="SimdHalfTensor"/> over the memory map (the
/// nn.Linear transposes, GPT-2's q|k|v column split and its own transposes are views, no copy);
/// vectors and float32 data become float32 tensors. The set must stay open while the tensors live
/// (<see cref="Runtime.Model"/> keeps it and disposes it with them).
/// </summary>
internal sealed unsafe class SimdWeightSource(SimdBackend backend, SafetensorsSet set, DType? target)
    : SafetensorsTensors(set, set.Dir), ITensorSource<Tensor>
{
    public Tensor Read(string name)
    {
        var info = WeightInfo(name);
        var shape = (int[])info.Shape.Clone();
        if (shape.Length == 2)
        {
            if (Set.FileOf(name).Mapped16(name) is { } m && (target is null || target == m.Kind))
                return SimdHalfTensor.Over((ushort*)m.Bits, info.ElementCount, shape, m.Kind, shape[1], transposed: false);
            if (target is { } t) return SimdHalfTensor.Round(Set.ReadF32(name), shape, t);
        }
        var h = Set.ReadHost(name);
        return h.F64 is not null ? backend.Weight(h.F64, h.Shape) : backend.Weight(h.F32!, h.Shape);
    }

    public Tensor Transpose(Tensor x) => x is SimdHalfTensor h ? h.TransposeView() : ViaHost(x, HostOps.Transpose);

    public Tensor Cols(Tensor x, int start, int n) => x is SimdHalfTensor h ? h.ColumnsView(start, n) : ViaHost(x, y => HostOps.Cols(y, start, n));

    public Tensor Rows(Tensor x, int[] idx) => x is SimdHalfTensor h ? h.GatherRows(idx) : ViaHost(x, y => HostOps.Rows(y, idx));

    // the float32 tensors' reshapes: through a host copy (vectors and float32 matrices only)
    private Tensor ViaHost(Tensor x, Func<HostTensor, HostTensor> f)
    {
        var data = new float[x.Length];
        backend.ToHost(x, data);
        var y = f(new HostTensor(x.Shape, data));
        return backend.Weight(y.F32!, y.Shape);
    }
}
