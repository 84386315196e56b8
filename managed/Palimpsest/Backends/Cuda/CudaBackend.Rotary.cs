using Palimpsest.Tensors;

namespace Palimpsest.Backends.Cuda;

// Launcher for kernels/rotary.cu, with the cos/sin tables it reads.
public sealed partial class CudaBackend
{
    private sealed record DeviceRopeTable(CudaTensor Cos, CudaTensor Sin, int Positions);

    // Per (frequencies, rotaryDim): cos/sin for positions [0, Positions), built on the host by RopeTable
    // (no accurate sin/cos in the device code) and grown on demand.
    private readonly Dictionary<(RopeFrequencies Rope, int RotaryDim), DeviceRopeTable> _ropeTables = new();

    // x [T, heads*headDim] rotated in place (inverse: by the negative angle = backward)
    public void Rope(Tensor x, int heads, int headDim, int rotaryDim, bool interleaved, RopeFrequencies rope, int posOffset, bool inverse)
    {
        var cx = F(x, "x");
        if (cx.Cols != heads * headDim || rotaryDim > headDim || rotaryDim % 2 != 0 || rotaryDim < 0 || posOffset < 0)
            throw new ArgumentException($"Rope: x {cx}, heads {heads}, headDim {headDim}, rotaryDim {rotaryDim}, posOffset {posOffset}");
        int T = cx.Rows;
        if (rotaryDim == 0 || T == 0) return;
        var table = RopeTableFor(rope, rotaryDim, posOffset + T);
        _k.Rotary.rope(PerElement((long)T * heads * (rotaryDim / 2)), cx.Ptr, table.Cos.Ptr, table.Sin.Ptr, T, heads, headDim,
            rotaryDim, interleaved ? 1 : 0, posOffset, inverse ? 1 : 0);
    }

    private DeviceRopeTable RopeTableFor(RopeFrequencies rope, int rotaryDim, int positions)
    {
        if (_ropeTables.TryGetValue((rope, rotaryDim), out var t) && t.Positions >= positions) return t;
        int p = Math.Max(positions, Math.Max(256, 2 * (t?.Positions ?? 0)));
        int half = rotaryDim / 2;
        // The same float32 angles as the reference and transformers (RopeTable).
        var (cos, sin) = RopeTable.Build(p, rotaryDim, rope);
        if (t is not null) { t.Cos.Dispose(); t.Sin.Dispose(); }
        var table = new DeviceRopeTable((CudaTensor)FromHost(cos, p, half), (CudaTensor)FromHost(sin, p, half), p);
        _ropeTables[(rope, rotaryDim)] = table;
        return table;
    }
}
