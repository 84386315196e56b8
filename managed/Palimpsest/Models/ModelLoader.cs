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
        var (config, set) = Open(dir);
        using (set) return (config, Architectures.Read(config, new SafetensorsSource(set, dir)));
    }

    /// <summary>A folder's config and its open safetensors files (the caller disposes them).</summary>
    public static (ModelConfig Config, SafetensorsSet Set) Open(string dir)
    {
        if (!Directory.Exists(dir)) throw new ModelFormatException($"{dir}: model folder not found");
        var config = ModelConfig.Load(Path.Combine(dir, "config.json"));
        return (config, SafetensorsSet.OpenFolder(dir));
    }

    /// <summary>Adapts a safetensors folder to <see cref="ITensorSource"/>.</summary>
    private sealed class SafetensorsSource(SafetensorsSet set, string dir) : SafetensorsTensors(set, dir), ITensorSource
    {
        public HostTensor Read(string name)
        {
            WeightInfo(name);
            return Set.ReadHost(name);
        }
    }
}

/// <summary>What every reader of a safetensors folder's weights shares: names, shapes, the location for messages, the dtype check.</summary>
public abstract class SafetensorsTensors(SafetensorsSet set, string dir)
{
    protected SafetensorsSet Set { get; } = set;
    public string Location => File.Exists(Path.Combine(dir, "model.safetensors")) ? Path.Combine(dir, "model.safetensors") : dir;
    public bool Contains(string name) => Set.Contains(name);
    public int[] ShapeOf(string name) => Set.Info(name).Shape;

    /// <summary>The tensor's header entry; throws naming it when its dtype is not a float one.</summary>
    protected SafetensorInfo WeightInfo(string name)
    {
        var info = Set.Info(name);
        if (info.DType is not ("F32" or "F16" or "BF16" or "F64"))
            throw new ModelFormatException($"{Location}: tensor '{name}' has dtype {info.DType}; weights must be F32, F16, BF16 or F64");
        return info;
    }
}
