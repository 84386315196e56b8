using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;
using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cpu;

/// <summary>
/// What a GEMM does to columns [j0, j0 + nc) of c [rows, ·] (row stride ldc) once they are final:
/// the short-M path calls it per column group on the thread that computed the group, while the
/// group is still in cache, so bias, residual and activation run in parallel and without another
/// pass over memory; the other paths call it once over all of c.
/// </summary>
internal unsafe interface IGemmEpilogue
{
    void Apply(float* c, int ldc, int rows, int j0, int nc);
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

    public void Apply(float* c, int ldc, int rows, int j0, int nc)
    {
        Span<float> tmp = stackalloc float[Math.Min(nc, Chunk)];
        for (int i = 0; i < rows; i++)
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
}
