using System.Text.Json.Nodes;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Tests.Models;

/// <summary>
/// Bad checkpoints and bad requests at the library level: each is one ModelFormatException or
/// ArgumentException whose single-line message names the file and the tensor or field.
/// (File-level safetensors corruption is covered in SafetensorsErrorTests; the CLI's exit codes in Cli/.)
/// </summary>
public class LoaderErrorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("palimpsest-loader-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A copy of the gpt2 fixture whose config and tensors the test may change.</summary>
    private string CopyFixture(Func<JsonObject, JsonObject>? editConfig = null, Func<string, HostTensor, HostTensor?>? editTensor = null)
    {
        var src = Paths.Fixture("gpt2");
        var dst = Path.Combine(_dir, "model");
        Directory.CreateDirectory(dst);
        var cfg = JsonNode.Parse(File.ReadAllText(Path.Combine(src, "config.json")))!.AsObject();
        File.WriteAllText(Path.Combine(dst, "config.json"), (editConfig?.Invoke(cfg) ?? cfg).ToJsonString());
        using var f = SafetensorsFile.Open(Path.Combine(src, "model.safetensors"));
        var list = new List<(string, HostTensor, string)>();
        foreach (var name in f.Tensors.Keys.Order())
        {
            var t = f.ReadHost(name);
            var edited = editTensor is null ? t : editTensor(name, t);
            if (edited is not null) list.Add((name, edited, "F32"));
        }
        SafetensorsWriter.Write(Path.Combine(dst, "model.safetensors"), list);
        return dst;
    }

    private static void OneLine(string message) => Assert.DoesNotContain('\n', message);

    [Fact]
    public void Missing_folder_names_the_folder()
    {
        var missing = Path.Combine(_dir, "nope");
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.LoadHost(missing));
        Assert.Contains(missing, e.Message); OneLine(e.Message);
    }

    [Fact]
    public void Unknown_model_type_names_the_field_and_value()
    {
        var dir = CopyFixture(c => { c["model_type"] = "mamba"; return c; });
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.LoadHost(dir));
        Assert.Contains("config.json", e.Message); Assert.Contains("mamba", e.Message); OneLine(e.Message);
    }

    [Fact]
    public void Config_field_of_the_wrong_type_names_the_field()
    {
        var dir = CopyFixture(c => { c["n_embd"] = "sixty-four"; return c; });
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.LoadHost(dir));
        Assert.Contains("'n_embd'", e.Message); Assert.Contains("config.json", e.Message); OneLine(e.Message);
    }

    [Fact]
    public void Config_that_is_not_json_names_the_file()
    {
        var dir = CopyFixture();
        File.WriteAllText(Path.Combine(dir, "config.json"), "{ \"model_type\": \"gpt2\", ");
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.LoadHost(dir));
        Assert.Contains("config.json", e.Message); OneLine(e.Message);
    }

    [Fact]
    public void Missing_tensor_names_the_file_and_tensor()
    {
        var dir = CopyFixture(editTensor: (n, t) => n == "transformer.h.1.mlp.c_fc.weight" ? null : t);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.LoadHost(dir));
        Assert.Contains("transformer.h.1.mlp.c_fc.weight", e.Message); Assert.Contains("model.safetensors", e.Message); OneLine(e.Message);
    }

    [Fact]
    public void Tensor_shape_not_matching_config_names_tensor_and_both_shapes()
    {
        // config says 4 layers of d_ff 256; make layer 2's c_fc [64, 255]
        var dir = CopyFixture(editTensor: (n, t) => n == "transformer.h.2.mlp.c_fc.weight" ? HostOps.Cols(t, 0, 255) : t);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.LoadHost(dir));
        Assert.Contains("transformer.h.2.mlp.c_fc.weight", e.Message);
        Assert.Contains("[64, 255]", e.Message); Assert.Contains("[64, 256]", e.Message); OneLine(e.Message);
    }

    [Fact]
    public void Config_disagreeing_with_the_weights_is_caught()
    {
        var dir = CopyFixture(c => { c["n_layer"] = 5; return c; });
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.LoadHost(dir));
        Assert.Contains("transformer.h.4.", e.Message); OneLine(e.Message);
    }

    [Fact]
    public void Integer_tensor_where_a_weight_belongs_is_refused()
    {
        var dir = CopyFixture();
        var path = Path.Combine(dir, "model.safetensors");
        using (var f = SafetensorsFile.Open(Path.Combine(Paths.Fixture("gpt2"), "model.safetensors")))
        {
            var tensors = f.Tensors.Keys.Where(k => k != "transformer.ln_f.bias").Select(k => (k, f.ReadHost(k), "F32")).ToList();
            SafetensorsWriter.Write(path, tensors);
        }
        // re-add ln_f.bias as I32 using the raw overload
        var raw = new List<(string, string, int[], byte[])>();
        using (var f = SafetensorsFile.Open(path))
            foreach (var k in f.Tensors.Keys)
            {
                var h = f.ReadF32(k);
                var bytes = new byte[h.Length * 4]; Buffer.BlockCopy(h, 0, bytes, 0, bytes.Length);
                raw.Add((k, "F32", f.Info(k).Shape, bytes));
            }
        raw.Add(("transformer.ln_f.bias", "I32", [64], new byte[64 * 4]));
        SafetensorsWriter.Write(path, raw);
        var e = Assert.Throws<ModelFormatException>(() => ModelLoader.LoadHost(dir));
        Assert.Contains("transformer.ln_f.bias", e.Message); Assert.Contains("I32", e.Message); OneLine(e.Message);
    }

    [Fact]
    public void Token_id_outside_the_vocabulary_is_refused_with_its_position()
    {
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.Load(Paths.Fixture("gpt2"), b);
        var e = Assert.Throws<ArgumentException>(() => new Transformer(model).Forward([1, 2, 1000, 3]));
        Assert.Contains("1000", e.Message); Assert.Contains("position 2", e.Message); OneLine(e.Message);
        Assert.Throws<ArgumentException>(() => new Transformer(model).Forward([-1]));
    }

    [Fact]
    public void Prompt_longer_than_the_context_is_refused()
    {
        using var b = new Palimpsest.Backends.Cpu.ReferenceBackend();
        using var model = Model.Load(Paths.Fixture("gpt2"), b);
        var ids = Enumerable.Repeat(5, 65).ToArray();
        var e = Assert.Throws<ArgumentException>(() => new Transformer(model).Forward(ids));
        Assert.Contains("65", e.Message); Assert.Contains("64", e.Message); OneLine(e.Message);
    }
}
