using Palimpsest.Tensors;
namespace Palimpsest.Backends.Cuda;

// Launchers for kernels/activations.cu.
public sealed partial class CudaBackend
{
    // x [n] -> y [n] = act(x)
    public void Activate(Activation act, Tensor x, Tensor y)
    {
        SameLength(x, y, "Activate");
        LaunchN(_k.Activations, "activate", x.Length, (int)act, F(x, "x").Ptr, F(y, "y").Ptr, x.Length);
    }

    // x, dy [n] -> dx [n] = act'(x) dy
    public void ActivateBackward(Activation act, Tensor x, Tensor dy, Tensor dx)
    {
        SameLength(x, dy, "ActivateBackward");
        SameLength(x, dx, "ActivateBackward");
        LaunchN(_k.Activations, "activate_backward", x.Length, (int)act, F(x, "x").Ptr, F(dy, "dy").Ptr, F(dx, "dx").Ptr, x.Length);
    }

    // gate, up [T, f] -> y [T, f] = silu(gate) up
    public void SiluMul(Tensor gate, Tensor up, Tensor y)
    {
        SameLength(gate, up, "SiluMul");
        SameLength(gate, y, "SiluMul");
        LaunchN(_k.Activations, "silu_mul", y.Length, F(gate, "gate").Ptr, F(up, "up").Ptr, F(y, "y").Ptr, y.Length);
    }

    // gate, up, dy [T, f] -> dgate, dup [T, f] (overwritten)
    public void SiluMulBackward(Tensor gate, Tensor up, Tensor dy, Tensor dgate, Tensor dup)
    {
        SameLength(gate, up, "SiluMulBackward");
        SameLength(gate, dy, "SiluMulBackward");
        SameLength(gate, dgate, "SiluMulBackward");
        SameLength(gate, dup, "SiluMulBackward");
        LaunchN(_k.Activations, "silu_mul_backward", gate.Length, F(gate, "gate").Ptr, F(up, "up").Ptr, F(dy, "dy").Ptr,
            F(dgate, "dgate").Ptr, F(dup, "dup").Ptr, gate.Length);
    }
}
