using Palimpsest.Tensors;
namespace Palimpsest.Backends.Cuda;

// Launchers for kernels/embedding.cu.
public sealed partial class CudaBackend
{
    // ids [T], wte [V, d], wpe [P, d] (optional) -> dst [T, d]
    public void Embed(ReadOnlySpan<int> ids, Tensor wte, Tensor? wpe, int posOffset, Tensor dst)
    {
        var cw = C(wte, "wte");
        var cp = wpe is null ? null : C(wpe, "wpe");
        var cd = F(dst, "dst");
        CheckEmbed(ids, cw, cp, posOffset, cd.Rows, cd.Cols, "Embed");
        if (ids.Length == 0) return;
        using var dIds = UploadInts(ids);
        _k.Embedding.embed(PerRow(ids.Length), dIds.Ptr, cw.Ptr, DTypeCode(cw.DType),
            cp?.Ptr ?? 0UL, cp is null ? 0 : DTypeCode(cp.DType), posOffset, cd.OverwritePtr, cd.Cols);
    }

    // dy [T, d] -> dwte [V, d] += scatter by ids, dwpe [P, d] += rows posOffset.. (optional)
    public void EmbedBackward(ReadOnlySpan<int> ids, Tensor dy, Tensor dwte, Tensor? dwpe, int posOffset)
    {
        var cy = F(dy, "dy");
        var cw = F(dwte, "dwte");
        var cp = dwpe is null ? null : F(dwpe, "dwpe");
        CheckEmbed(ids, cw, cp, posOffset, cy.Rows, cy.Cols, "EmbedBackward");
        if (ids.Length == 0) return;
        using var dIds = UploadInts(ids);
        _k.Embedding.embed_backward(PerElement(cy.Length), dIds.Ptr, cy.Ptr, cw.Ptr, cp?.Ptr ?? 0UL, posOffset, ids.Length, cy.Cols);
    }

    private static void CheckEmbed(ReadOnlySpan<int> ids, CudaTensor wte, CudaTensor? wpe, int posOffset, int rows, int d, string op)
    {
        if (rows != ids.Length || wte.Cols != d || (wpe is not null && wpe.Cols != d))
            throw new ArgumentException($"{op}: {ids.Length} ids, wte {wte}, wpe {wpe?.ToString() ?? "none"}, rows [{rows}, {d}]");
        int v = wte.Rows;
        for (int t = 0; t < ids.Length; t++)
            if ((uint)ids[t] >= (uint)v) throw new ArgumentOutOfRangeException(nameof(ids), $"{op}: id {ids[t]} at {t} is outside [0, {v})");
        if (wpe is not null && (posOffset < 0 || posOffset + ids.Length > wpe.Rows))
            throw new ArgumentOutOfRangeException(nameof(posOffset), $"{op}: positions {posOffset}..{posOffset + ids.Length - 1} outside [0, {wpe.Rows})");
    }
}
