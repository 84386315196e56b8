using System.Globalization;
using Palimpsest.Models;
using Palimpsest.Runtime;
using Palimpsest.Tensors;

namespace Palimpsest.Training;

/// <summary>
/// Writes a GPT-2 model in the Hugging Face layout (config.json + model.safetensors, tied head),
/// so that transformers and our own loader read what our trainer produced. Conv1D weights are
/// [in, out] as ours; c_attn packs q|k|v along the out dimension.
/// </summary>
public static class Gpt2Checkpoint
{
    /// <summary>config.json of a GPT-2 with the given shape (GPT-2 vocabulary, gelu_new, tied embeddings).</summary>
    public static void WriteConfig(string dir, int dModel, int layers, int heads, int positions, int vocab = 50257, string dtype = "float16")
    {
        if (dModel % heads != 0) throw new ArgumentException($"d_model {dModel} is not a multiple of the {heads} heads");
        Directory.CreateDirectory(dir);
        string json = string.Create(CultureInfo.InvariantCulture, $$"""
        {
          "activation_function": "gelu_new",
          "architectures": ["GPT2LMHeadModel"],
          "attn_pdrop": 0.0,
          "bos_token_id": 50256,
          "dtype": "{{dtype}}",
          "embd_pdrop": 0.0,
          "eos_token_id": 50256,
          "initializer_range": 0.02,
          "layer_norm_epsilon": 1e-05,
          "model_type": "gpt2",
          "n_embd": {{dModel}},
          "n_head": {{heads}},
          "n_inner": null,
          "n_layer": {{layers}},
          "n_positions": {{positions}},
          "resid_pdrop": 0.0,
          "scale_attn_weights": true,
          "tie_word_embeddings": true,
          "vocab_size": {{vocab}}
        }
        """);
        AtomicFile.WriteAllText(Path.Combine(dir, "config.json"), json + "\n");
    }

    /// <summary>Writes the model's weights as DIR/model.safetensors in <paramref name="dtype"/> (F16, BF16 or F32), atomically.</summary>
    public static void WriteWeights(string dir, Model model, string dtype = "F16")
    {
        var c = model.Config; var b = model.Backend; var p = model.Params;
        if (!p.Tied || p.HeadB is not null || p.Wpe is null || c.Norm != NormKind.LayerNorm)
            throw new ArgumentException("only GPT-2 shaped models (LayerNorm, learned positions, tied head) can be written as GPT-2");
        HostTensor H(Tensor t) { var a = new float[t.Length]; b.ToHost(t, a); return new HostTensor(t.Shape, a); }
        HostTensor Cat(params Tensor[] ts)
        {
            // [rows, Σ cols]: columns of each tensor side by side (bias vectors: one row)
            int rows = ts[0].Rank == 1 ? 1 : ts[0].Rows, cols = ts.Sum(t => t.Cols);
            var outp = new float[(long)rows * cols];
            int off = 0;
            foreach (var t in ts)
            {
                var a = H(t).F32!;
                for (int r = 0; r < rows; r++) Array.Copy(a, (long)r * t.Cols, outp, (long)r * cols + off, t.Cols);
                off += t.Cols;
            }
            return new HostTensor(ts[0].Rank == 1 ? [cols] : [rows, cols], outp);
        }
        var list = new List<(string, HostTensor, string)>
        {
            ("transformer.wte.weight", H(p.Wte), dtype),
            ("transformer.wpe.weight", H(p.Wpe), dtype),
        };
        for (int i = 0; i < c.Layers; i++)
        {
            var bp = p.Blocks[i]; string n = $"transformer.h.{i}.";
            list.Add((n + "ln_1.weight", H(bp.Ln1G), dtype)); list.Add((n + "ln_1.bias", H(bp.Ln1B!), dtype));
            list.Add((n + "attn.c_attn.weight", Cat(bp.Wq, bp.Wk, bp.Wv), dtype));
            list.Add((n + "attn.c_attn.bias", Cat(bp.Bq!, bp.Bk!, bp.Bv!), dtype));
            list.Add((n + "attn.c_proj.weight", H(bp.Wo), dtype)); list.Add((n + "attn.c_proj.bias", H(bp.Bo!), dtype));
            list.Add((n + "ln_2.weight", H(bp.Ln2G!), dtype)); list.Add((n + "ln_2.bias", H(bp.Ln2B!), dtype));
            list.Add((n + "mlp.c_fc.weight", H(bp.WUp), dtype)); list.Add((n + "mlp.c_fc.bias", H(bp.BUp!), dtype));
            list.Add((n + "mlp.c_proj.weight", H(bp.WDown), dtype)); list.Add((n + "mlp.c_proj.bias", H(bp.BDown!), dtype));
        }
        list.Add(("transformer.ln_f.weight", H(p.LnFG), dtype)); list.Add(("transformer.ln_f.bias", H(p.LnFB!), dtype));
        SafetensorsWriter.Write(Path.Combine(dir, "model.safetensors"), list, new Dictionary<string, string> { ["format"] = "pt" });
    }
}
