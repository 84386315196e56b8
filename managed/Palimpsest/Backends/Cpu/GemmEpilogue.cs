using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using System.Runtime.Intrinsics;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// What a GEMM does to rows [i0, i0 + rows) x columns [j0, j0 + nc) of c (row stride ldc) once they are final:
/// the short-M path calls it per column group on the thread that computed the group, while the
/// group is still in cache, so bias, residual and activation run in parallel and without another
/// pass over memory; the other paths call it once over all of c.
/// </summary>
internal unsafe interface IGemmEpilogue
{
    /// <param name="c">c's first element (row 0, column 0), not the block's.</param>
    void Apply(float* c, int ldc, int i0, int rows, int j0, int nc);
}

/// <summary>
/// A linear layer's epilogue, in the order of its composition (<see cref="ComposedLinear"/>):
/// y += b; y = residual + y; key = act(y). Each optional; rows of residual and key are N apart.
/// Reused from call to call by its backend (one GEMM at a time).
/// </summary>
internal sealed unsafe class LinearEpilogue : IGemmEpilogue
{
    /// <summary>Elements activated per step (the scratch lives on the stack).</summary>
    private const int Chunk = 512;

    public float* Bias, Residual, Key;
    public int N;
    public Activation? Act;

    public void Apply(float* c, int ldc, int i0, int rows, int j0, int nc)
    {
        Span<float> tmp = stackalloc float[Math.Min(nc, Chunk)];
        for (int i = i0; i < i0 + rows; i++)
        {
            var y = new Span<float>(c + (long)i * ldc + j0, nc);
            if (Bias != null) TensorPrimitives.Add(y, new ReadOnlySpan<float>(Bias + j0, nc), y);
            if (Residual != null) TensorPrimitives.Add(new ReadOnlySpan<float>(Residual + (long)i * N + j0, nc), y, y);
            if (Act is not { } act) continue;
            var key = new Span<float>(Key + (long)i * N + j0, nc);
            for (int o = 0; o < nc; o += Chunk)
            {
                int n = Math.Min(Chunk, nc - o);
                SimdBackend.ActivateChunk(act, y.Slice(o, n), key.Slice(o, n), tmp[..n]);
            }
        }
    }

    /// <summary>Whether <see cref="ApplyTile"/> can run this epilogue: no activation, or gelu_tanh.</summary>
    public bool FusesTiles => Act is null or Activation.GeluTanh;

    /// <summary>
    /// The same operations as <see cref="Apply"/> on one tile of c, rows [i0, i0 + mr) x columns
    /// [j0, j0 + nr) (at most 8 x 32), right after the micro-kernel wrote it, while it is in L1: a
    /// whole 32-column row in two 512-bit halves, a partial one value by value (the same operations
    /// per element, so the result does not depend on where a column falls).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)]
    public void ApplyTile(float* c, int ldc, int i0, int mr, int j0, int nr)
    {
        for (int i = i0; i < i0 + mr; i++)
        {
            float* y = c + (long)i * ldc + j0;
            float* r = Residual == null ? null : Residual + (long)i * N + j0;
            float* k = Key == null ? null : Key + (long)i * N + j0;
            float* bias = Bias == null ? null : Bias + j0;
            if (nr == PackedWeight.NR)
            {
                Row16(y, bias, r, k);
                Row16(y + 16, bias == null ? null : bias + 16, r == null ? null : r + 16, k == null ? null : k + 16);
                continue;
            }
            for (int j = 0; j < nr; j++)
            {
                float v = y[j];
                if (bias != null) v += bias[j];
                if (r != null) v = r[j] + v;
                y[j] = v;
                if (k != null) k[j] = v * GeluTanh.Scalar(v);
            }
        }
    }

    private static void Row16(float* y, float* bias, float* r, float* k)
    {
        var v = Vector512.Load(y);
        if (bias != null) v += Vector512.Load(bias);
        if (r != null) v = Vector512.Load(r) + v;
        v.Store(y);
        if (k == null) return;
        var lo = v.GetLower();
        var hi = v.GetUpper();
        (lo * GeluTanh.Gate(lo)).Store(k);
        (hi * GeluTanh.Gate(hi)).Store(k + 8);
    }
}
