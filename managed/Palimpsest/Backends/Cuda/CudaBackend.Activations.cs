using Palimpsest.Tensors;
namespace Palimpsest.Backends.Cuda;

// Launchers for kernels/activations.cu.
public sealed partial class CudaBackend
{
    // x [n] -> y [n] = act(x)
    public void Activate(Activation act, Tensor x, Tensor y)
    {
        SameLength(x, y, "Activate");
        _k.Activations.activate(PerElement(x.Length), (int)act, F(x, "x").Ptr, Out(y, "y"), x.Length);
    }

    // x, dy [n] -> dx [n] = act'(x) dy
    public void ActivateBackward(Activation act, Tensor x, Tensor dy, Tensor dx)
    {
        SameLength(x, dy, "ActivateBackward");
        SameLength(x, dx, "ActivateBackward");
        _k.Activations.activate_backward(PerElement(x.Length), (int)act, F(x, "x").Ptr, F(dy, "dy").Ptr, Out(dx, "dx"), x.Length);
    }

    // gate, up [T, f] -> y [T, f] = silu(gate) up
    public void SiluMul(Tensor gate, Tensor up, Tensor y)
    {
        SameLength(gate, up, "SiluMul");
        SameLength(gate, y, "SiluMul");
        _k.Activations.silu_mul(PerElement(y.Length), F(gate, "gate").Ptr, F(up, "up").Ptr, Out(y, "y"), y.Length);
    }

    // gate, up, dy [T, f] -> dgate, dup [T, f] (overwritten)
    public void SiluMulBackward(Tensor gate, Tensor up, Tensor dy, Tensor dgate, Tensor dup)
    {
        SameLength(gate, up, "SiluMulBackward");
        SameLength(gate, dy, "SiluMulBackward");
        SameLength(gate, dgate, "SiluMulBackward");
        SameLength(gate, dup, "SiluMulBackward");
        _k.Activations.silu_mul_backward(PerElement(gate.Length), F(gate, "gate").Ptr, F(up, "up").Ptr, F(dy, "dy").Ptr,
            Out(dgate, "dgate"), Out(dup, "dup"), gate.Length);
    }
}
