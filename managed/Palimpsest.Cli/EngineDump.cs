using System.Runtime.InteropServices;
using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Cli;

/// <summary>
/// `run --dump`: input_ids [T] I64, logits [T, V] and hidden_states [L+1, T, d] in the backend's
/// precision, named like the fixtures' reference.safetensors so the two compare directly.
/// </summary>
internal static class EngineDump
{
    public static void Write(string path, int[] ids, HostTensor logits, HostTensor hidden)
    {
        var idBytes = MemoryMarshal.AsBytes(Array.ConvertAll(ids, i => (long)i).AsSpan()).ToArray();
        SafetensorsWriter.Write(path,
        [
            ("input_ids", "I64", [ids.Length], idBytes),
            ("logits", DTypeOf(logits), logits.Shape, Bytes(logits)),
            ("hidden_states", DTypeOf(hidden), hidden.Shape, Bytes(hidden)),
        ]);
    }

    private static string DTypeOf(HostTensor t) => t.F64 is not null ? "F64" : "F32";

    private static byte[] Bytes(HostTensor t) =>
        t.F64 is not null ? MemoryMarshal.AsBytes(t.F64.AsSpan()).ToArray() : MemoryMarshal.AsBytes(t.F32!.AsSpan()).ToArray();
}
