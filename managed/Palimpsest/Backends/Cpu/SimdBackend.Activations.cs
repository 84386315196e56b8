using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using MathNet.Numerics;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

public sealed partial class SimdBackend
{
    /// <summary>Elements per chunk of the activations: the temporaries live on the stack and in L1,
    /// and chunking makes in-place calls (y aliasing x) safe.</summary>
    private const int Chunk = 512;

    /// <summary>Spans shorter than this (one 512-bit vector of floats) are padded to it before the activation.</summary>
    private const int PadBelow = 16;

    private const double InvSqrt2 = 0.7071067811865476;
    private const double InvSqrt2Pi = 0.3989422804014327;

    // y = act(x) elementwise
    public void Activate(Activation act, Tensor x, Tensor y)
    {
        SameLength(x, y, "Activate");
        var X = F(x); var Y = F(y);
        Span<float> tmp = stackalloc float[Chunk];
        int len = checked((int)x.Length);
        for (int o = 0; o < len; o += Chunk)
        {
            int n = Math.Min(Chunk, len - o);
            ActivateChunk(act, X.AsSpan(o, n), Y.AsSpan(o, n), tmp[..n]);
        }
    }

    /// <summary>ys = act(xs) for one chunk (ys may alias xs); ts [n] is scratch.</summary>
    internal static void ActivateChunk(Activation act, ReadOnlySpan<float> xs, Span<float> ys, Span<float> ts)
    {
        if (xs.Length < PadBelow && act == Activation.Silu)
        {
            // TensorPrimitives computes a span shorter than a vector in scalar code, whose sigmoid
            // differs in the last bit from its vector lanes; padded, every value takes the vector
            // path, wherever it falls (a fused epilogue's last column group can be 2 columns wide)
            Span<float> px = stackalloc float[PadBelow], py = stackalloc float[PadBelow], pt = stackalloc float[PadBelow];
            px.Clear();
            xs.CopyTo(px);
            ActivateChunk(act, px, py, pt);
            py[..xs.Length].CopyTo(ys);
            return;
        }
        switch (act)
        {
            case Activation.GeluTanh:
                GeluTanh.Apply(xs, ys);
                break;
            case Activation.GeluErf:
                // No vector erf in TensorPrimitives; GELU-erf models are not the hot path here.
                for (int i = 0; i < xs.Length; i++) ys[i] = (float)(0.5 * xs[i] * (1.0 + SpecialFunctions.Erf(xs[i] * InvSqrt2)));
                break;
            case Activation.Relu:
                TensorPrimitives.Max(xs, 0f, ys);
                break;
            case Activation.Silu:
                TensorPrimitives.Sigmoid(xs, ts);
                TensorPrimitives.Multiply(xs, ts, ys);
                break;
            default: throw new ArgumentOutOfRangeException(nameof(act));
        }
    }

    // dx = act'(x) · dy
    public void ActivateBackward(Activation act, Tensor x, Tensor dy, Tensor dx)
    {
        SameLength(x, dy, "ActivateBackward"); SameLength(x, dx, "ActivateBackward");
        var X = F(x); var DY = F(dy); var DX = F(dx);
        Span<float> tmp = stackalloc float[Chunk];
        int len = checked((int)x.Length);
        for (int o = 0; o < len; o += Chunk)
        {
            int n = Math.Min(Chunk, len - o);
            ReadOnlySpan<float> xs = X.AsSpan(o, n), gs = DY.AsSpan(o, n);
            var ds = DX.AsSpan(o, n); var s = tmp[..n];
            switch (act)
            {
                case Activation.GeluTanh:
                    // s = sigmoid(2u) = 0.5(1 + tanh u), 1 − tanh²u = 4s(1 − s):
                    // gelu' = s + 2x·s(1 − s)·sqrt(2/pi)·(1 + 3·0.044715·x²)
                    GeluTanh.Gate(xs, s);
                    for (int i = 0; i < n; i++)
                    {
                        float xi = xs[i], si = s[i];
                        float grad = si + 2 * xi * si * (1 - si) * GeluTanh.Sqrt2OverPi * (1 + 3 * GeluTanh.C * xi * xi);
                        ds[i] = grad * gs[i];
                    }
                    break;
                case Activation.GeluErf:
                    for (int i = 0; i < n; i++)
                    {
                        double xi = xs[i];
                        double grad = 0.5 * (1 + SpecialFunctions.Erf(xi * InvSqrt2)) + xi * InvSqrt2Pi * Math.Exp(-0.5 * xi * xi);
                        ds[i] = (float)(grad * gs[i]);
                    }
                    break;
                case Activation.Relu:
                    for (int i = 0; i < n; i++) ds[i] = xs[i] > 0 ? gs[i] : 0;
                    break;
                case Activation.Silu:
                    // silu' = s·(1 + x·(1 − s)), s = sigmoid(x)
                    TensorPrimitives.Sigmoid(xs, s);
                    for (int i = 0; i < n; i++) ds[i] = s[i] * (1 + xs[i] * (1 - s[i])) * gs[i];
                    break;
                default: throw new ArgumentOutOfRangeException(nameof(act));
            }
        }
    }

    // y [T, f] = silu(gate) · up
    public void SiluMul(Tensor gate, Tensor up, Tensor y)
    {
        SameLength(gate, up, "SiluMul"); SameLength(gate, y, "SiluMul");
        var Gt = F(gate); var U = F(up); var Y = F(y);
        Span<float> tmp = stackalloc float[Chunk];
        int len = checked((int)gate.Length);
        for (int o = 0; o < len; o += Chunk)
        {
            int n = Math.Min(Chunk, len - o);
            ReadOnlySpan<float> gs = Gt.AsSpan(o, n), us = U.AsSpan(o, n);
            var s = tmp[..n];
            TensorPrimitives.Sigmoid(gs, s);
            TensorPrimitives.Multiply(s, gs, s);
            TensorPrimitives.Multiply(s, us, Y.AsSpan(o, n));
        }
    }

    // dgate, dup [T, f] (overwritten) from dy [T, f]
    public void SiluMulBackward(Tensor gate, Tensor up, Tensor dy, Tensor dgate, Tensor dup)
    {
        SameLength(gate, up, "SiluMulBackward"); SameLength(gate, dy, "SiluMulBackward");
        SameLength(gate, dgate, "SiluMulBackward"); SameLength(gate, dup, "SiluMulBackward");
        var Gt = F(gate); var U = F(up); var DY = F(dy); var DG = F(dgate); var DU = F(dup);
        Span<float> tmp = stackalloc float[Chunk];
        int len = checked((int)gate.Length);
        for (int o = 0; o < len; o += Chunk)
        {
            int n = Math.Min(Chunk, len - o);
            var s = tmp[..n];
            TensorPrimitives.Sigmoid(Gt.AsSpan(o, n), s);
            for (int i = 0; i < n; i++)
            {
                int k = o + i;
                float g = Gt[k], si = s[i], dyi = DY[k];
                float u = U[k];
                DG[k] = dyi * u * si * (1 + g * (1 - si));
                DU[k] = dyi * g * si;
            }
        }
    }
}
