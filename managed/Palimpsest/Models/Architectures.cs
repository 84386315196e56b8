using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>
/// The only place that knows Hugging Face tensor names. Maps a checkpoint onto the canonical
/// <see cref="ParamSet{T}"/> (matrices [in, out]) and checks every shape against config.json.
/// </summary>
public static class Architectures
{
    /// <summary>Reads and converts every parameter. Throws <see cref="ModelFormatException"/> naming the tensor.</summary>
    public static ParamSet<T> Read<T>(ModelConfig c, ITensorSource<T> src) where T : class
    {
        return c.Arch switch
        {
            Architecture.Gpt2 => Gpt2(c, src),
            Architecture.GptJ => GptJ(c, src),
            Architecture.GptNeoX => NeoX(c, src),
            Architecture.Llama => Llama(c, src),
            _ => throw new ModelFormatException($"architecture {c.Arch} has no tensor map"),
        };
    }

    /// <summary>GPT-2 only: whether a checkpoint's names start with "transformer." (GPT2LMHeadModel saves
    /// "transformer.*"; a bare GPT2Model saves without the prefix).</summary>
    public static bool HasTransformerPrefix(Func<string, bool> contains) => contains("transformer.wte.weight");

    /// <summary>
    /// Where block <paramref name="layer"/>'s canonical WDown [f, d] lives in a checkpoint of <paramref name="c"/>
    /// (the matrix every editor changes): the name the readers below load it from and its stored layout.
    /// </summary>
    /// <param name="hasTransformerPrefix">GPT-2 only: see <see cref="HasTransformerPrefix"/>.</param>
    public static DownProjection Down(ModelConfig c, int layer, bool hasTransformerPrefix)
    {
        if (layer < 0 || layer >= c.Layers)
            throw new ArgumentException($"layer {layer} is out of range: the model has {c.Layers} layers (0..{c.Layers - 1})");
        int f = c.DFf, d = c.DModel;
        string b = BlockPrefix(c.Arch, layer, hasTransformerPrefix);
        return c.Arch switch
        {
            Architecture.Gpt2 => new(b + "mlp.c_proj.weight", false, f, d),
            Architecture.GptJ => new(b + "mlp.fc_out.weight", true, f, d),
            Architecture.GptNeoX => new(b + "mlp.dense_4h_to_h.weight", true, f, d),
            Architecture.Llama => new(b + "mlp.down_proj.weight", true, f, d),
            _ => throw new ModelFormatException($"architecture {c.Arch} has no down-projection name"),
        };
    }

    // the names of block `layer`'s tensors start with this
    private static string BlockPrefix(Architecture arch, int layer, bool hasTransformerPrefix) => arch switch
    {
        Architecture.Gpt2 => $"{(hasTransformerPrefix ? "transformer." : "")}h.{layer}.",
        Architecture.GptJ => $"transformer.h.{layer}.",
        Architecture.GptNeoX => $"gpt_neox.layers.{layer}.",
        Architecture.Llama => $"model.layers.{layer}.",
        _ => throw new ModelFormatException($"architecture {arch} has no tensor map"),
    };

    // GPT-2: Conv1D weights are already [in, out]; c_attn packs q|k|v along the out dimension.
    private static ParamSet<T> Gpt2<T>(ModelConfig c, ITensorSource<T> s) where T : class
    {
        int d = c.DModel, f = c.DFf;
        bool prefixed = HasTransformerPrefix(s.Contains);
        string p = prefixed ? "transformer." : "";
        var blocks = new BlockParams<T>[c.Layers];
        for (int i = 0; i < c.Layers; i++)
        {
            string b = BlockPrefix(c.Arch, i, prefixed);
            var qkv = s.Get(b + "attn.c_attn.weight", d, 3 * d);
            var qkvB = s.Get(b + "attn.c_attn.bias", 3 * d);
            blocks[i] = new BlockParams<T>
            {
                Ln1G = s.Get(b + "ln_1.weight", d), Ln1B = s.Get(b + "ln_1.bias", d),
                Ln2G = s.Get(b + "ln_2.weight", d), Ln2B = s.Get(b + "ln_2.bias", d),
                Wq = s.Cols(qkv, 0, d), Wk = s.Cols(qkv, d, d), Wv = s.Cols(qkv, 2 * d, d),
                Bq = s.Cols(qkvB, 0, d), Bk = s.Cols(qkvB, d, d), Bv = s.Cols(qkvB, 2 * d, d),
                Wo = s.Get(b + "attn.c_proj.weight", d, d), Bo = s.Get(b + "attn.c_proj.bias", d),
                WUp = s.Get(b + "mlp.c_fc.weight", d, f), BUp = s.Get(b + "mlp.c_fc.bias", f),
                WDown = s.Get(Down(c, i, prefixed)), BDown = s.Get(b + "mlp.c_proj.bias", d),
            };
        }
        var wte = s.Get(p + "wte.weight", c.Vocab, d);
        return new ParamSet<T>
        {
            Wte = wte, Wpe = s.Get(p + "wpe.weight", c.MaxPositions, d), Blocks = blocks,
            LnFG = s.Get(p + "ln_f.weight", d), LnFB = s.Get(p + "ln_f.bias", d),
            Head = wte, // GPT-2 always ties the head to the token embedding
        };
    }

    // GPT-J: nn.Linear weights are [out, in]; one ln_1 feeds both branches; no attention biases.
    private static ParamSet<T> GptJ<T>(ModelConfig c, ITensorSource<T> s) where T : class
    {
        int d = c.DModel, f = c.DFf;
        var blocks = new BlockParams<T>[c.Layers];
        for (int i = 0; i < c.Layers; i++)
        {
            string b = BlockPrefix(c.Arch, i, false);
            blocks[i] = new BlockParams<T>
            {
                Ln1G = s.Get(b + "ln_1.weight", d), Ln1B = s.Get(b + "ln_1.bias", d),
                Wq = s.Linear(b + "attn.q_proj.weight", d, d), Wk = s.Linear(b + "attn.k_proj.weight", d, d),
                Wv = s.Linear(b + "attn.v_proj.weight", d, d), Wo = s.Linear(b + "attn.out_proj.weight", d, d),
                WUp = s.Linear(b + "mlp.fc_in.weight", d, f), BUp = s.Get(b + "mlp.fc_in.bias", f),
                WDown = s.Get(Down(c, i, false)), BDown = s.Get(b + "mlp.fc_out.bias", d),
            };
        }
        var wte = s.Get("transformer.wte.weight", c.Vocab, d);
        bool tied = c.TiedHead;
        return new ParamSet<T>
        {
            Wte = wte, Blocks = blocks,
            LnFG = s.Get("transformer.ln_f.weight", d), LnFB = s.Get("transformer.ln_f.bias", d),
            Head = tied ? wte : s.Get("lm_head.weight", c.Vocab, d),
            HeadB = s.Contains("lm_head.bias") ? s.Get("lm_head.bias", c.Vocab) : null,
        };
    }

    // GPT-NeoX: query_key_value is [3d, d] with rows grouped per head as [H, (q|k|v), hd].
    private static ParamSet<T> NeoX<T>(ModelConfig c, ITensorSource<T> s) where T : class
    {
        int d = c.DModel, f = c.DFf, H = c.Heads, hd = c.HeadDim;
        var blocks = new BlockParams<T>[c.Layers];
        int[] Rows(int which) => Enumerable.Range(0, H * hd).Select(r => (r / hd) * 3 * hd + which * hd + r % hd).ToArray();
        int[] qRows = Rows(0), kRows = Rows(1), vRows = Rows(2);
        for (int i = 0; i < c.Layers; i++)
        {
            string b = BlockPrefix(c.Arch, i, false);
            var qkv = s.Get(b + "attention.query_key_value.weight", 3 * d, d);
            T? qkvB = c.QkvBias ? s.Get(b + "attention.query_key_value.bias", 3 * d) : null;
            blocks[i] = new BlockParams<T>
            {
                Ln1G = s.Get(b + "input_layernorm.weight", d), Ln1B = s.Get(b + "input_layernorm.bias", d),
                Ln2G = s.Get(b + "post_attention_layernorm.weight", d), Ln2B = s.Get(b + "post_attention_layernorm.bias", d),
                Wq = s.Transpose(s.Rows(qkv, qRows)),
                Wk = s.Transpose(s.Rows(qkv, kRows)),
                Wv = s.Transpose(s.Rows(qkv, vRows)),
                Bq = qkvB is null ? null : s.Rows(qkvB, qRows), Bk = qkvB is null ? null : s.Rows(qkvB, kRows),
                Bv = qkvB is null ? null : s.Rows(qkvB, vRows),
                Wo = s.Linear(b + "attention.dense.weight", d, d), Bo = c.AttnOutBias ? s.Get(b + "attention.dense.bias", d) : null,
                WUp = s.Linear(b + "mlp.dense_h_to_4h.weight", d, f), BUp = s.Get(b + "mlp.dense_h_to_4h.bias", f),
                WDown = s.Get(Down(c, i, false)), BDown = s.Get(b + "mlp.dense_4h_to_h.bias", d),
            };
        }
        var wte = s.Get("gpt_neox.embed_in.weight", c.Vocab, d);
        bool tied = c.TiedHead;
        return new ParamSet<T>
        {
            Wte = wte, Blocks = blocks,
            LnFG = s.Get("gpt_neox.final_layer_norm.weight", d), LnFB = s.Get("gpt_neox.final_layer_norm.bias", d),
            Head = tied ? wte : s.Get("embed_out.weight", c.Vocab, d),
        };
    }

    // Llama: RMSNorm (no bias), SwiGLU MLP, grouped-query attention.
    private static ParamSet<T> Llama<T>(ModelConfig c, ITensorSource<T> s) where T : class
    {
        int d = c.DModel, f = c.DFf, q = c.QDim, kv = c.KvDim;
        // SwiGLU with mlp_bias would need a gate bias too; no known checkpoint uses it.
        if (c.MlpBias) throw new ModelFormatException("config.json: field 'mlp_bias' true is not supported for llama");
        var blocks = new BlockParams<T>[c.Layers];
        for (int i = 0; i < c.Layers; i++)
        {
            string b = BlockPrefix(c.Arch, i, false);
            T? Bias(string n, int len, bool has) => has ? s.Get(b + n, len) : null;
            blocks[i] = new BlockParams<T>
            {
                Ln1G = s.Get(b + "input_layernorm.weight", d), Ln2G = s.Get(b + "post_attention_layernorm.weight", d),
                Wq = s.Linear(b + "self_attn.q_proj.weight", d, q), Bq = Bias("self_attn.q_proj.bias", q, c.QkvBias),
                Wk = s.Linear(b + "self_attn.k_proj.weight", d, kv), Bk = Bias("self_attn.k_proj.bias", kv, c.QkvBias),
                Wv = s.Linear(b + "self_attn.v_proj.weight", d, kv), Bv = Bias("self_attn.v_proj.bias", kv, c.QkvBias),
                Wo = s.Linear(b + "self_attn.o_proj.weight", q, d), Bo = Bias("self_attn.o_proj.bias", d, c.AttnOutBias),
                WGate = s.Linear(b + "mlp.gate_proj.weight", d, f),
                WUp = s.Linear(b + "mlp.up_proj.weight", d, f), BUp = Bias("mlp.up_proj.bias", f, c.MlpBias),
                WDown = s.Get(Down(c, i, false)), BDown = Bias("mlp.down_proj.bias", d, c.MlpBias),
            };
        }
        var wte = s.Get("model.embed_tokens.weight", c.Vocab, d);
        bool tied = c.TiedHead;
        return new ParamSet<T>
        {
            Wte = wte, Blocks = blocks, LnFG = s.Get("model.norm.weight", d),
            Head = tied ? wte : s.Get("lm_head.weight", c.Vocab, d),
        };
    }
}

/// <summary>Where <see cref="Architectures"/> reads named tensors from (a safetensors folder, a test double,
/// or a backend that takes tensors straight from the file) and the few reshapes the tensor maps need, on <typeparamref name="T"/>.</summary>
public interface ITensorSource<T> where T : class
{
    /// <summary>Human-readable location for error messages ("DIR/model.safetensors").</summary>
    string Location { get; }
    bool Contains(string name);
    /// <summary>Shape of a tensor (throws <see cref="ModelFormatException"/> when absent).</summary>
    int[] ShapeOf(string name);
    /// <summary>The tensor in its stored layout.</summary>
    T Read(string name);
    /// <summary>x [R, C] -> [C, R].</summary>
    T Transpose(T x);
    /// <summary>x [R, C] -> columns [start, start + n) as [R, n]; a vector [C] -> [n].</summary>
    T Cols(T x, int start, int n);
    /// <summary>x [R, C] (or [R]) -> rows idx as [idx.Length, C] (or [idx.Length]).</summary>
    T Rows(T x, int[] idx);
}

/// <summary>A source that has no file: it is told each tensor's name and the shape config.json implies
/// (<see cref="RandomCheckpoint"/> lists the tensors a checkpoint of a config holds this way).</summary>
public interface ITensorSchema<T> : ITensorSource<T> where T : class
{
    T Expect(string name, int[] shape);
}

/// <summary>A source of host tensors: float32 (or float64 for F64 checkpoints); the reshapes are <see cref="HostOps"/>'.</summary>
public interface ITensorSource : ITensorSource<HostTensor>
{
    HostTensor ITensorSource<HostTensor>.Transpose(HostTensor x) => HostOps.Transpose(x);
    HostTensor ITensorSource<HostTensor>.Cols(HostTensor x, int start, int n) => HostOps.Cols(x, start, n);
    HostTensor ITensorSource<HostTensor>.Rows(HostTensor x, int[] idx) => HostOps.Rows(x, idx);
}

public static class TensorSourceExtensions
{
    /// <summary>Reads a tensor and checks it has exactly the shape config.json implies.</summary>
    public static T Get<T>(this ITensorSource<T> s, string name, params int[] expected) where T : class
    {
        if (s is ITensorSchema<T> schema) return schema.Expect(name, expected);
        if (!s.Contains(name)) throw new ModelFormatException($"{s.Location}: tensor '{name}' not found");
        var shape = s.ShapeOf(name);
        if (!shape.SequenceEqual(expected))
            throw new ModelFormatException($"{s.Location}: tensor '{name}' has shape [{string.Join(", ", shape)}] but config.json implies [{string.Join(", ", expected)}]");
        return s.Read(name);
    }

    /// <summary>An nn.Linear weight stored [out, in], returned transposed to the canonical [in, out].</summary>
    public static T Linear<T>(this ITensorSource<T> s, string name, int inDim, int outDim) where T : class =>
        s.Transpose(s.Get(name, outDim, inDim));

    /// <summary>A block's WDown in the canonical [f, d], whichever layout the checkpoint stores it in.</summary>
    public static T Get<T>(this ITensorSource<T> s, DownProjection dp) where T : class =>
        dp.Transposed ? s.Linear(dp.TensorName, dp.KeyDim, dp.ValueDim) : s.Get(dp.TensorName, dp.KeyDim, dp.ValueDim);
}

/// <summary>
/// Where block l's canonical WDown [f, d] lives in a Hugging Face checkpoint (<see cref="Architectures.Down"/>).
/// GPT-2's Conv1D stores it as [f, d] (= canonical); nn.Linear checkpoints store [out, in] = [d, f]
/// (transposed). The journal writes an edited matrix back under this name and layout.
/// </summary>
public sealed record DownProjection(string TensorName, bool Transposed, int KeyDim, int ValueDim)
{
    /// <summary>The stored shape: [f, d], or [d, f] when transposed.</summary>
    public int[] StoredShape => Transposed ? [ValueDim, KeyDim] : [KeyDim, ValueDim];

    /// <summary>Flat index of canonical element (i in [0, f), j in [0, d)) in the stored layout.</summary>
    public long Index(int i, int j) => Transposed ? (long)j * KeyDim + i : (long)i * ValueDim + j;
}

/// <summary>Small host-side reshapes used only while loading.</summary>
public static class HostOps
{
    // x [R, C] -> [C, R]
    public static HostTensor Transpose(HostTensor x)
    {
        int r = x.Shape[0], c = x.Shape[1];
        if (x.F64 is { } d64)
        {
            var o = new double[d64.Length];
            for (int i = 0; i < r; i++) for (int j = 0; j < c; j++) o[(long)j * r + i] = d64[(long)i * c + j];
            return new HostTensor([c, r], o);
        }
        var d = x.F32!; var of = new float[d.Length];
        Parallel.For(0, r, i => { for (int j = 0; j < c; j++) of[(long)j * r + i] = d[(long)i * c + j]; });
        return new HostTensor([c, r], of);
    }

    // x [R, C] -> columns [start, start + n) as [R, n]; a vector [C] -> [n]
    public static HostTensor Cols(HostTensor x, int start, int n)
    {
        int c = x.Shape[^1], r = (int)(x.Length / c);
        int[] shape = x.Shape.Length == 1 ? [n] : [r, n];
        if (x.F64 is { } d64)
        {
            var o = new double[(long)r * n];
            for (int i = 0; i < r; i++) Array.Copy(d64, (long)i * c + start, o, (long)i * n, n);
            return new HostTensor(shape, o);
        }
        var of = new float[(long)r * n];
        for (int i = 0; i < r; i++) Array.Copy(x.F32!, (long)i * c + start, of, (long)i * n, n);
        return new HostTensor(shape, of);
    }

    // x [R, C] (or [R]) -> rows idx as [idx.Length, C] (or [idx.Length])
    public static HostTensor Rows(HostTensor x, int[] idx)
    {
        int c = x.Shape.Length == 1 ? 1 : x.Shape[1];
        int[] shape = x.Shape.Length == 1 ? [idx.Length] : [idx.Length, c];
        if (x.F64 is { } d64)
        {
            var o = new double[(long)idx.Length * c];
            for (int i = 0; i < idx.Length; i++) Array.Copy(d64, (long)idx[i] * c, o, (long)i * c, c);
            return new HostTensor(shape, o);
        }
        var of = new float[(long)idx.Length * c];
        for (int i = 0; i < idx.Length; i++) Array.Copy(x.F32!, (long)idx[i] * c, of, (long)i * c, c);
        return new HostTensor(shape, of);
    }
}
