using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

// Launcher for kernels/rotary.cu, with the cos/sin tables it reads.
public sealed partial class CudaBackend
{
    private sealed record RopeTable(CudaTensor Cos, CudaTensor Sin, int Positions);

    // Per (theta, rotaryDim): cos/sin of pos * theta^(-2i/rotaryDim) for pos in [0, Positions),
    // computed in float64 on the host (no accurate sin/cos in the device code) and grown on demand.
    private readonly Dictionary<(double Theta, int RotaryDim), RopeTable> _ropeTables = new();

    // x [T, heads*headDim] rotated in place (inverse: by the negative angle = backward)
    public void Rope(Tensor x, int heads, int headDim, int rotaryDim, bool interleaved, double theta, int posOffset, bool inverse)
    {
        var cx = F(x, "x");
        if (cx.Cols != heads * headDim || rotaryDim > headDim || rotaryDim % 2 != 0 || rotaryDim < 0 || posOffset < 0)
            throw new ArgumentException($"Rope: x {cx}, heads {heads}, headDim {headDim}, rotaryDim {rotaryDim}, posOffset {posOffset}");
        int T = cx.Rows;
        if (rotaryDim == 0 || T == 0) return;
        var table = RopeTableFor(theta, rotaryDim, posOffset + T);
        LaunchN(_k.Rotary, "rope", (long)T * heads * (rotaryDim / 2), cx.Ptr, table.Cos.Ptr, table.Sin.Ptr, T, heads, headDim,
            rotaryDim, interleaved ? 1 : 0, posOffset, inverse ? 1 : 0);
    }

    private RopeTable RopeTableFor(double theta, int rotaryDim, int positions)
    {
        if (_ropeTables.TryGetValue((theta, rotaryDim), out var t) && t.Positions >= positions) return t;
        int p = Math.Max(positions, Math.Max(256, 2 * (t?.Positions ?? 0)));
        int half = rotaryDim / 2;
        var cos = new float[(long)p * half];
        var sin = new float[(long)p * half];
        for (int i = 0; i < half; i++)
        {
            double invFreq = Math.Pow(theta, -2.0 * i / rotaryDim);
            for (int pos = 0; pos < p; pos++)
            {
                double a = pos * invFreq;
                cos[(long)pos * half + i] = (float)Math.Cos(a);
                sin[(long)pos * half + i] = (float)Math.Sin(a);
            }
        }
        if (t is not null) { t.Cos.Dispose(); t.Sin.Dispose(); }
        var table = new RopeTable((CudaTensor)FromHost(cos, p, half), (CudaTensor)FromHost(sin, p, half), p);
        _ropeTables[(theta, rotaryDim)] = table;
        return table;
    }
}
