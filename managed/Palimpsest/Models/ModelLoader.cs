using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>
/// Loads a Hugging Face folder (config.json + model.safetensors or sharded safetensors) into the
/// canonical host parameter set. Tensors are read from a memory map one at a time and converted
/// straight into their canonical layout, so a checkpoint is never held twice.
/// </summary>
public static class ModelLoader
{
    public static (ModelConfig Config, ParamSet<HostTensor> Params) LoadHost(string dir)
    {
        if (!Directory.Exists(dir)) throw new ModelFormatException($"{dir}: model folder not found");
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        using var set = SafetensorsSet.OpenFolder(dir);
        var p = Architectures.Read(config, new SafetensorsSource(set, dir));
        return (config, p);
    }

    /// <summary>Adapts a safetensors folder to <see cref="ITensorSource"/>.</summary>
    private sealed class SafetensorsSource(SafetensorsSet set, string dir) : ITensorSource
    {
        public string Location => File.Exists(Path.Combine(dir, "model.safetensors")) ? Path.Combine(dir, "model.safetensors") : dir;
        public bool Contains(string name) => set.Contains(name);
        public int[] ShapeOf(string name) => set.Info(name).Shape;
        public HostTensor Read(string name)
        {
            var info = set.Info(name);
            if (info.DType is not ("F32" or "F16" or "BF16" or "F64"))
                throw new ModelFormatException($"{Location}: tensor '{name}' has dtype {info.DType}; weights must be F32, F16, BF16 or F64");
            return set.ReadHost(name);
        }
    }
}
