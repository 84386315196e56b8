using Palimpsest.Models;

namespace Palimpsest.Editing;

/// <summary>
/// One LEMoE edit as an edited-model folder journals it, a <see cref="PartsBlob"/> the journal does
/// not interpret: the expert the edit trained under expert.* (the arrays of <see cref="LemoeAdaptor.ExpertParts"/>),
/// then the router as trained with it (router.down, router.up), and its layer in the metadata. The
/// folder's lemoe.safetensors is rebuilt from its active edits: their experts in order, the newest's router.
/// </summary>
internal static class LemoeEdit
{
    private const string Expert = "expert.";

    /// <summary>The parts of the edit that trained <paramref name="a"/>'s newest expert (copies of its arrays).</summary>
    public static PartsBlob Newest(LemoeAdaptor a)
    {
        var ex = a.Experts[^1];
        var copy = new LemoeExpert
        {
            A = (double[])ex.A.Clone(), B = (double[])ex.B.Clone(), Key = (double[])ex.Key.Clone(),
            RouterDownBefore = (double[])ex.RouterDownBefore.Clone(), RouterUpBefore = (double[])ex.RouterUpBefore.Clone(),
        };
        return Of(a.Layer, a.Rank, a.DFf, a.DModel, a.RouterHidden, a.KeyDim, copy, (double[])a.RouterDown.Clone(), (double[])a.RouterUp.Clone());
    }

    /// <summary>An edit's parts from its expert and the router after it (router down [hidden, d_model], up [key_dim, hidden]).</summary>
    public static PartsBlob Of(int layer, int rank, int dFf, int dModel, int routerHidden, int keyDim,
        LemoeExpert expert, double[] routerDown, double[] routerUp) =>
        new(LemoeAdaptor.ExpertParts(Expert, expert, rank, dFf, dModel, routerHidden, keyDim)
                .Concat(LemoeAdaptor.RouterParts(routerHidden, dModel, keyDim, routerDown, routerUp)).ToList(),
            new Dictionary<string, string> { ["layer"] = layer.ToString(System.Globalization.CultureInfo.InvariantCulture) });

    /// <summary>Whether expert <paramref name="i"/> of <paramref name="a"/> is the one <paramref name="edit"/> trained (same layer, A, B and key).</summary>
    public static bool Trained(PartsBlob edit, LemoeAdaptor a, int i)
    {
        var ex = a.Experts[i];
        var (journaled, _) = Read(edit);
        return edit.Int("layer") == a.Layer && journaled.A.AsSpan().SequenceEqual(ex.A)
            && journaled.B.AsSpan().SequenceEqual(ex.B) && journaled.Key.AsSpan().SequenceEqual(ex.Key);
    }

    /// <summary>
    /// Writes the adaptor of these edits (oldest first) at <paramref name="path"/>: their experts in
    /// order and the newest one's router, with <paramref name="metadata"/> in the header.
    /// </summary>
    public static void WriteAdaptor(string path, IReadOnlyList<PartsBlob> edits, IReadOnlyDictionary<string, string> metadata)
    {
        var newest = edits[^1];
        var (_, dims) = Read(newest);
        var experts = edits.Select(e => Read(e, dims).Expert).ToList();
        LemoeAdaptor.WriteFile(path, newest.Int("layer"), dims.Rank, dims.DFf, dims.DModel, dims.RouterHidden, dims.KeyDim,
            newest.Read("router.down", (long)dims.RouterHidden * dims.DModel), newest.Read("router.up", (long)dims.KeyDim * dims.RouterHidden),
            experts, metadata);
    }

    private sealed record Dims(int Rank, int DFf, int DModel, int RouterHidden, int KeyDim);

    // an edit's expert and the adaptor's sizes, from the shapes of its parts (or checked against `dims`)
    private static (LemoeExpert Expert, Dims Dims) Read(PartsBlob edit, Dims? dims = null)
    {
        int[] a = edit.ShapeOf(Expert + "a"), down = edit.ShapeOf("router.down"), up = edit.ShapeOf("router.up");
        dims ??= new Dims(a[0], a[^1], down[^1], down[0], up[0]);
        return (LemoeAdaptor.ReadExpert(Expert, edit.Read, dims.Rank, dims.DFf, dims.DModel, dims.RouterHidden, dims.KeyDim), dims);
    }
}
