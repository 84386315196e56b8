using Palimpsest.Models;
using Palimpsest.Tensors;

namespace Palimpsest.Cli;

/// <summary>The CLI's only door into the runtime (placeholder until the runtime lands on main).</summary>
internal sealed class Engine : IDisposable
{
    public static Engine Load(string folder, ModelConfig config, bool f64) =>
        throw new NotSupportedException("the transformer runtime is not part of this build yet");

    public string BackendName => "";
    public double[] LastLogits(int[] ids) => throw new NotSupportedException();
    public (HostTensor Logits, HostTensor Hidden) Full(int[] ids) => throw new NotSupportedException();
    public IEnumerable<int> Generate(int[] prompt, Commands.GenerateSettings settings) => throw new NotSupportedException();
    public void Dispose() { }
}

internal static class EngineInfo
{
    public static IEnumerable<(string, string)> Weights(ModelSession s) => [];
}

internal static class EngineDump
{
    public static void Write(string path, int[] ids, HostTensor logits, HostTensor hidden) => throw new NotSupportedException();
}
