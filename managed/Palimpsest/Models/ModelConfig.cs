using System.Text.Json;
using Palimpsest.Tensors;

namespace Palimpsest.Models;

/// <summary>How a block is wired and where its tensors are named; Mistral and Qwen2 are Llama's wiring (their differences are flags).</summary>
public enum Architecture { Gpt2, GptJ, GptNeoX, Llama }

public enum NormKind { LayerNorm, RmsNorm }

/// <summary>
/// Everything the forward needs to know about a checkpoint, read from config.json. An
/// architecture is data: these flags say how a block is wired; the tensor names live in
/// <see cref="Architectures"/>.
/// </summary>
public sealed record ModelConfig
{
    public required Architecture Arch { get; init; }
    public required int Layers { get; init; }
    public required int DModel { get; init; }
    public required int Heads { get; init; }
    public required int KvHeads { get; init; }
    public required int HeadDim { get; init; }
    public required int DFf { get; init; }
    public required int Vocab { get; init; }
    /// <summary>Context length (n_positions / max_position_embeddings).</summary>
    public required int MaxPositions { get; init; }
    public required double NormEps { get; init; }
    public required NormKind Norm { get; init; }
    public required Activation Act { get; init; }
    /// <summary>Learned absolute positions (GPT-2) instead of rotary.</summary>
    public bool LearnedPositions { get; init; }
    /// <summary>Dims of each head that are rotated (0 = no rotary).</summary>
    public int RotaryDim { get; init; }
    /// <summary>GPT-J rotates pairs (2i, 2i+1); NeoX/Llama rotate (i, i + rotaryDim/2).</summary>
    public bool RotaryInterleaved { get; init; }
    public double RopeTheta { get; init; } = 10000.0;
    /// <summary>rope_scaling that changes the rotations (linear, llama3), or null.</summary>
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>The rotary frequencies the backends rotate by (a new object each call: keep it, a decode step must not allocate).</summary>
    public RopeFrequencies Rope => new(RopeTheta, RopeScaling);
    /// <summary>
    /// The attention window of the layers that slide (Mistral's sliding_window, Qwen2's with use_sliding_window), or
    /// null: on those layers the query at position i attends the keys at i − window &lt; j ≤ i (the query and the
    /// window − 1 before it; see <see cref="AttentionWindow"/>).
    /// </summary>
    public int? SlidingWindow { get; init; }
    /// <summary>[Layers]: which layers slide when <see cref="SlidingWindow"/> is set; null: all of them (Mistral).</summary>
    public IReadOnlyList<bool>? SlidingLayers { get; init; }

    /// <summary>
    /// Layer l's attention window for <see cref="Backends.IBackend.Attention"/>: <see cref="SlidingWindow"/> where the
    /// layer slides, 0 (full causal attention) elsewhere.
    /// </summary>
    public int AttentionWindow(int layer) => SlidingWindow is int w && (SlidingLayers is null || SlidingLayers[layer]) ? w : 0;
    /// <summary>x + attn(ln1 x) + mlp(ln2 x) (NeoX parallel) or + mlp(ln1 x) (GPT-J, <see cref="SharedNorm"/>).</summary>
    public bool ParallelResidual { get; init; }
    /// <summary>GPT-J: one LayerNorm feeds both attention and MLP.</summary>
    public bool SharedNorm { get; init; }
    /// <summary>SwiGLU MLP: down(silu(gate x) · up x).</summary>
    public bool GatedMlp { get; init; }
    public bool QkvBias { get; init; }
    public bool AttnOutBias { get; init; }
    public bool MlpBias { get; init; }
    /// <summary>LayerNorm has a bias (always true for LayerNorm, false for RMSNorm).</summary>
    public bool NormBias => Norm == NormKind.LayerNorm;
    public bool TiedHead { get; init; }
    public bool HeadBias { get; init; }
    /// <summary>The first of config.json's eos_token_id (it may be a list), or null. Setting it sets the list to that one id.</summary>
    public int? EosTokenId
    {
        get => EosTokenIds.Count > 0 ? EosTokenIds[0] : null;
        init => EosTokenIds = value is int v ? [v] : [];
    }
    /// <summary>Every id of eos_token_id (Llama 3.1 Instruct: end_of_text, eom_id, eot_id): generation stops at any of them.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public string ModelType { get; init; } = "";
    /// <summary>config.json fields neither read nor known to be harmless (<see cref="ConfigFields"/>): `info` names them.</summary>
    public IReadOnlyList<string> UnrecognisedFields { get; init; } = [];

    public int QDim => Heads * HeadDim;
    public int KvDim => KvHeads * HeadDim;

    /// <summary>Parses config.json. Throws <see cref="ModelFormatException"/> naming the file and field.</summary>
    public static ModelConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ModelFormatException($"{path}: config.json not found");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new ModelFormatException($"{path}: not valid JSON ({e.Message.Split('\n')[0]})"); }
        using (doc) return Parse(doc.RootElement, path);
    }

    public static ModelConfig Parse(JsonElement j, string file = "config.json")
    {
        if (j.ValueKind != JsonValueKind.Object) throw new ModelFormatException($"{file}: top level is not a JSON object");
        var r = new ConfigReader(j, file);
        string type = r.Str("model_type");
        ConfigFields.RefuseUnimplemented(j, type, file);
        return ParseKnown(j, r, type, file) with { UnrecognisedFields = ConfigFields.Unrecognised(j, type) };
    }

    private static ModelConfig ParseKnown(JsonElement j, ConfigReader r, string type, string file)
    {
        switch (type)
        {
            case "gpt2":
            {
                int d = r.Int("n_embd"), h = r.Int("n_head");
                int? inner = r.OptInt("n_inner");
                r.Require(d % h == 0, "n_embd", $"n_embd {d} is not divisible by n_head {h}");
                return new ModelConfig
                {
                    Arch = Architecture.Gpt2, ModelType = type,
                    Layers = r.Int("n_layer"), DModel = d, Heads = h, KvHeads = h, HeadDim = d / h,
                    DFf = inner ?? 4 * d, Vocab = r.Int("vocab_size"), MaxPositions = r.Int("n_positions"),
                    NormEps = r.Dbl("layer_norm_epsilon", 1e-5), Norm = NormKind.LayerNorm,
                    Act = r.Act("activation_function", "gelu_new"), LearnedPositions = true,
                    QkvBias = true, AttnOutBias = true, MlpBias = true, TiedHead = true,
                    EosTokenIds = r.IdList("eos_token_id"),
                };
            }
            case "gptj":
            {
                int d = r.Int("n_embd"), h = r.Int("n_head");
                r.Require(d % h == 0, "n_embd", $"n_embd {d} is not divisible by n_head {h}");
                int rot = r.OptInt("rotary_dim") ?? d / h;
                r.Require(rot > 0 && rot <= d / h && rot % 2 == 0, "rotary_dim", $"rotary_dim {rot} must be even and in (0, {d / h}]");
                return new ModelConfig
                {
                    Arch = Architecture.GptJ, ModelType = type,
                    Layers = r.Int("n_layer"), DModel = d, Heads = h, KvHeads = h, HeadDim = d / h,
                    DFf = r.OptInt("n_inner") ?? 4 * d, Vocab = r.Int("vocab_size"), MaxPositions = r.Int("n_positions"),
                    NormEps = r.Dbl("layer_norm_epsilon", 1e-5), Norm = NormKind.LayerNorm,
                    Act = r.Act("activation_function", "gelu_new"), RotaryDim = rot, RotaryInterleaved = true,
                    RopeTheta = 10000.0, ParallelResidual = true, SharedNorm = true,
                    QkvBias = false, AttnOutBias = false, MlpBias = true,
                    TiedHead = r.Bool("tie_word_embeddings", false), HeadBias = true,
                    EosTokenIds = r.IdList("eos_token_id"),
                };
            }
            case "gpt_neox":
            {
                int d = r.Int("hidden_size"), h = r.Int("num_attention_heads");
                r.Require(d % h == 0, "hidden_size", $"hidden_size {d} is not divisible by num_attention_heads {h}");
                int hd = d / h;
                double pct = r.RopeParam("partial_rotary_factor", "rotary_pct", 1.0);
                int rot = (int)(hd * pct);
                r.Require(rot % 2 == 0 && rot >= 0 && rot <= hd, "rotary_pct", $"rotary dims {rot} must be even and <= head_dim {hd}");
                bool bias = r.Bool("attention_bias", true);
                return new ModelConfig
                {
                    Arch = Architecture.GptNeoX, ModelType = type,
                    Layers = r.Int("num_hidden_layers"), DModel = d, Heads = h, KvHeads = h, HeadDim = hd,
                    DFf = r.Int("intermediate_size"), Vocab = r.Int("vocab_size"), MaxPositions = r.Int("max_position_embeddings"),
                    NormEps = r.Dbl("layer_norm_eps", 1e-5), Norm = NormKind.LayerNorm,
                    Act = r.Act("hidden_act", "gelu"), RotaryDim = rot, RotaryInterleaved = false,
                    RopeTheta = r.RopeParam("rope_theta", "rotary_emb_base", 10000.0), RopeScaling = r.RopeScalingOf(),
                    ParallelResidual = r.Bool("use_parallel_residual", true),
                    QkvBias = bias, AttnOutBias = bias, MlpBias = true,
                    TiedHead = r.Bool("tie_word_embeddings", false), EosTokenIds = r.IdList("eos_token_id"),
                };
            }
            case "llama" or "mistral" or "qwen2":
            {
                int d = r.Int("hidden_size"), h = r.Int("num_attention_heads");
                int kv = r.OptInt("num_key_value_heads") ?? h;
                int hd = r.OptInt("head_dim") ?? d / h;
                r.Require(h % kv == 0, "num_key_value_heads", $"num_attention_heads {h} is not a multiple of num_key_value_heads {kv}");
                r.Require(hd % 2 == 0, "head_dim", $"head_dim {hd} must be even for rotary");
                // Qwen2 always has biases on q, k and v and none on o; Llama's attention_bias sets all four; Mistral has none
                bool qkvBias = type == "qwen2" || (type == "llama" && r.Bool("attention_bias", false));
                bool oBias = type == "llama" && r.Bool("attention_bias", false);
                var (window, slidingLayers) = AttentionWindow(r, type, r.Int("num_hidden_layers"));
                string act = r.OptStr("hidden_act") ?? "silu";
                r.Require(act == "silu", "hidden_act", $"hidden_act '{act}' is not supported for {type} (only silu)");
                return new ModelConfig
                {
                    Arch = Architecture.Llama, ModelType = type,
                    Layers = r.Int("num_hidden_layers"), DModel = d, Heads = h, KvHeads = kv, HeadDim = hd,
                    DFf = r.Int("intermediate_size"), Vocab = r.Int("vocab_size"),
                    MaxPositions = r.Int("max_position_embeddings"), SlidingWindow = window, SlidingLayers = slidingLayers,
                    NormEps = r.Dbl("rms_norm_eps", 1e-6), Norm = NormKind.RmsNorm, Act = Activation.Silu, GatedMlp = true,
                    RotaryDim = hd, RotaryInterleaved = false, RopeTheta = r.RopeParam("rope_theta", "rope_theta", 10000.0),
                    RopeScaling = r.RopeScalingOf(), QkvBias = qkvBias, AttnOutBias = oBias, MlpBias = type == "llama" && r.Bool("mlp_bias", false),
                    TiedHead = r.Bool("tie_word_embeddings", false), EosTokenIds = r.IdList("eos_token_id"),
                };
            }
            default:
                throw new ModelFormatException($"{file}: model_type '{type}' is not supported (supported: gpt2, gptj, gpt_neox, llama, mistral, qwen2)");
        }
    }

    // The attention window and the layers that use it (window null: none; layers null: all), as transformers reads
    // them. Mistral: sliding_window on every layer, null meaning none (v0.3) and absent meaning MistralConfig's
    // default 4096 (a config saved by transformers leaves out fields at their default). Qwen2: only with
    // use_sliding_window (Qwen2Config sets sliding_window to None otherwise; its default is 4096), on the layers
    // whose layer_types entry is "sliding_attention", which Qwen2Config derives, when absent, as the layers from
    // max_window_layers (default 28) up. A window of 0 or less is refused by OptInt (must be positive).
    private static (int? Window, bool[]? Layers) AttentionWindow(ConfigReader r, string type, int layers)
    {
        const int DefaultWindow = 4096;
        switch (type)
        {
            case "mistral":
                return (r.Has("sliding_window") ? r.OptInt("sliding_window") : DefaultWindow, null);
            case "qwen2" when r.Bool("use_sliding_window", false):
            {
                int? window = r.Has("sliding_window") ? r.OptInt("sliding_window") : DefaultWindow;
                var sliding = r.SlidingLayers(layers);
                return window is null || !sliding.Contains(true) ? (null, null) : (window, sliding);
            }
            default:
                return (null, null);
        }
    }

    /// <summary>Typed field access that names the file and field in every error.</summary>
    private readonly struct ConfigReader(JsonElement j, string file)
    {
        private ModelFormatException Bad(string field, string what) => new($"{file}: field '{field}' {what}");

        public void Require(bool ok, string field, string msg) { if (!ok) throw new ModelFormatException($"{file}: field '{field}': {msg}"); }

        public string Str(string f)
        {
            if (!j.TryGetProperty(f, out var v)) throw Bad(f, "is missing");
            if (v.ValueKind != JsonValueKind.String) throw Bad(f, "must be a string");
            return v.GetString()!;
        }

        public string? OptStr(string f) => j.TryGetProperty(f, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

        public int Int(string f) => OptInt(f) ?? throw Bad(f, "is missing");

        public int? OptInt(string f)
        {
            if (!j.TryGetProperty(f, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            if (v.ValueKind == JsonValueKind.Array && v.GetArrayLength() > 0 && f == "bos_token_id") v = v[0];
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out int x)) throw Bad(f, "must be an integer");
            if (x <= 0 && f != "bos_token_id") throw Bad(f, $"must be positive (got {x})");
            return x;
        }

        /// <summary>A token id or a list of them (eos_token_id): [] when absent or null; each must be an integer ≥ 0.</summary>
        public IReadOnlyList<int> IdList(string f)
        {
            if (!j.TryGetProperty(f, out var v) || v.ValueKind == JsonValueKind.Null) return [];
            var items = v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().ToArray() : [v];
            var ids = new List<int>();
            foreach (var item in items)
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out int x) || x < 0)
                    throw Bad(f, "must be a token id (an integer >= 0) or a list of them");
                if (!ids.Contains(x)) ids.Add(x);
            }
            return ids;
        }

        public double Dbl(string f, double dflt)
        {
            if (!j.TryGetProperty(f, out var v) || v.ValueKind == JsonValueKind.Null) return dflt;
            if (v.ValueKind != JsonValueKind.Number) throw Bad(f, "must be a number");
            double x = v.GetDouble();
            if (!(x > 0) || double.IsInfinity(x)) throw Bad(f, $"must be positive and finite (got {x})");
            return x;
        }

        public bool Bool(string f, bool dflt)
        {
            if (!j.TryGetProperty(f, out var v) || v.ValueKind == JsonValueKind.Null) return dflt;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Bad(f, "must be true or false"),
            };
        }

        /// <summary>Whether the field is present (null included).</summary>
        public bool Has(string f) => j.TryGetProperty(f, out _);

        /// <summary>
        /// Qwen2: [layers], which layers slide — layer_types when given (newer transformers; one "full_attention" or
        /// "sliding_attention" per layer), else the layers from max_window_layers (default 28, 0 allowed) up.
        /// </summary>
        public bool[] SlidingLayers(int layers)
        {
            if (j.TryGetProperty("layer_types", out var lt) && lt.ValueKind != JsonValueKind.Null)
            {
                if (lt.ValueKind != JsonValueKind.Array) throw Bad("layer_types", $"must be a list (got {lt.GetRawText()})");
                if (lt.GetArrayLength() != layers)
                    throw Bad("layer_types", $"has {lt.GetArrayLength()} entries for {layers} layers (num_hidden_layers): one per layer");
                var sliding = new bool[layers];
                for (int i = 0; i < layers; i++)
                {
                    var t = lt[i];
                    sliding[i] = (t.ValueKind == JsonValueKind.String ? t.GetString() : null) switch
                    {
                        "sliding_attention" => true,
                        "full_attention" => false,
                        _ => throw Bad($"layer_types[{i}]", $"{t.GetRawText()} is not 'full_attention' or 'sliding_attention'"),
                    };
                }
                return sliding;
            }
            int from = 28;
            if (j.TryGetProperty("max_window_layers", out var m) && m.ValueKind != JsonValueKind.Null)
            {
                if (m.ValueKind != JsonValueKind.Number || !m.TryGetInt32(out from) || from < 0)
                    throw Bad("max_window_layers", $"must be a non-negative integer (got {m.GetRawText()})");
            }
            return Enumerable.Range(0, layers).Select(l => l >= from).ToArray();
        }

        /// <summary>
        /// The rotary scaling of rope_scaling / rope_parameters: null for none, "default", or "dynamic" (dynamic NTK
        /// changes nothing up to max_position_embeddings, and no longer sequence runs); "linear" and "llama3" with their
        /// fields. Other types were refused before parsing (<see cref="ConfigFields.RefuseUnimplemented"/>).
        /// </summary>
        public RopeScaling? RopeScalingOf()
        {
            foreach (var block in new[] { "rope_parameters", "rope_scaling" })
            {
                if (!j.TryGetProperty(block, out var rp) || rp.ValueKind != JsonValueKind.Object) continue;
                string? type = null;
                foreach (var key in new[] { "rope_type", "type" })
                    if (rp.TryGetProperty(key, out var t) && t.ValueKind == JsonValueKind.String) { type = t.GetString(); break; }
                var self = this; // a struct's local function cannot use this
                double Field(string f)
                {
                    if (!rp.TryGetProperty(f, out var v)) throw self.Bad($"{block}.{f}", $"is missing (rope_type '{type}' needs it)");
                    if (v.ValueKind != JsonValueKind.Number || !(v.GetDouble() > 0)) throw self.Bad($"{block}.{f}", "must be a positive number");
                    return v.GetDouble();
                }
                switch (type)
                {
                    case RopeScaling.LinearType:
                        return new RopeScaling(type, Field("factor"));
                    case RopeScaling.Llama3Type:
                    {
                        double low = Field("low_freq_factor"), high = Field("high_freq_factor");
                        if (!(high > low)) throw Bad($"{block}.high_freq_factor", $"{high} must exceed low_freq_factor {low}");
                        double original = Field("original_max_position_embeddings");
                        if (original != Math.Floor(original) || original > int.MaxValue) throw Bad($"{block}.original_max_position_embeddings", "must be an integer");
                        return new RopeScaling(type, Field("factor"), low, high, (int)original);
                    }
                }
            }
            return null;
        }

        /// <summary>Newer transformers put rotary settings under rope_parameters / rope_scaling; older at top level.</summary>
        public double RopeParam(string nested, string topLevel, double dflt)
        {
            foreach (var block in new[] { "rope_parameters", "rope_scaling" })
            {
                if (j.TryGetProperty(block, out var rp) && rp.ValueKind == JsonValueKind.Object && rp.TryGetProperty(nested, out var v))
                {
                    // a rope_type not implemented was refused before parsing (ConfigFields.RefuseUnimplemented)
                    if (v.ValueKind != JsonValueKind.Number) throw Bad($"{block}.{nested}", "must be a number");
                    return v.GetDouble();
                }
            }
            if (j.TryGetProperty(topLevel, out var top) && top.ValueKind == JsonValueKind.Number) return top.GetDouble();
            return dflt;
        }

        public Activation Act(string f, string dflt)
        {
            string s = OptStr(f) ?? dflt;
            return s switch
            {
                "gelu_new" or "gelu_pytorch_tanh" or "gelu_fast" => Activation.GeluTanh,
                "gelu" => Activation.GeluErf,
                "relu" => Activation.Relu,
                "silu" or "swish" => Activation.Silu,
                _ => throw Bad(f, $"'{s}' is not a supported activation (gelu_new, gelu, relu, silu)"),
            };
        }
    }
}

/// <summary>A checkpoint or config that cannot be used; the message names the file and tensor/field.</summary>
public sealed class ModelFormatException(string message) : Exception(message);
