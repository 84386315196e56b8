using System.Text.Json;
using Palimpsest.Models;

namespace Palimpsest.Tests.Models;

/// <summary>Config fields that change the arithmetic are implemented or refused naming field and value; the rest are known or reported.</summary>
public class ConfigFieldsTests
{
    private static ModelConfig Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return ModelConfig.Parse(doc.RootElement, "config.json");
    }

    private const string Llama = """
        "model_type": "llama", "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
        "intermediate_size": 128, "vocab_size": 1000, "max_position_embeddings": 256, "rms_norm_eps": 1e-5
        """;

    private const string Gpt2J = """
        "model_type": "gptj", "n_embd": 32, "n_head": 4, "n_layer": 2, "vocab_size": 1000, "n_positions": 64
        """;

    private const string Gpt2 = """
        "model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 2, "vocab_size": 1000, "n_positions": 64
        """;

    [Theory]
    // Qwen2.5's long-context option and Phi-3's: not implemented
    [InlineData("{" + Llama + """, "rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}}""", "rope_scaling.rope_type", "'yarn'")]
    [InlineData("{" + Llama + """, "rope_scaling": {"type": "longrope", "factor": 2.0}}""", "rope_scaling.type", "'longrope'")]
    // GPT-J in transformers has no rope scaling at all
    [InlineData("{" + Gpt2J + """, "rope_scaling": {"type": "linear", "factor": 2.0}}""", "rope_scaling.type", "'linear'")]
    // llama3 without the fields it needs
    [InlineData("{" + Llama + """, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}}""", "rope_scaling.low_freq_factor", "is missing")]
    [InlineData("{" + Gpt2 + """, "scale_attn_by_inverse_layer_idx": true}""", "scale_attn_by_inverse_layer_idx", "true")]
    [InlineData("{" + Gpt2 + """, "scale_attn_weights": false}""", "scale_attn_weights", "false")]
    public void A_field_that_changes_the_arithmetic_and_is_not_implemented_is_refused(string json, string field, string value)
    {
        var e = Assert.Throws<ModelFormatException>(() => Parse(json));
        Assert.StartsWith($"config.json: field '{field}' {value}", e.Message);
    }

    [Fact]
    public void Llama3_linear_and_dynamic_rope_scaling_are_read()
    {
        // Llama 3.1: top-level rope_theta beside rope_scaling with rope_type llama3 (ran without its scaling before, then was refused)
        var c = Parse("{" + Llama + """, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}""");
        Assert.Equal(new Palimpsest.Tensors.RopeScaling("llama3", 8, 1, 4, 8192), c.RopeScaling);
        Assert.Equal(500000, c.RopeTheta);
        Assert.Empty(c.UnrecognisedFields);
        // the older spelling of long-context Llama 2 variants
        Assert.Equal(new Palimpsest.Tensors.RopeScaling("linear", 2), Parse("{" + Llama + """, "rope_scaling": {"type": "linear", "factor": 2.0}}""").RopeScaling);
        // dynamic NTK changes nothing within max_position_embeddings, the longest sequence that runs
        Assert.Null(Parse("{" + Llama + """, "rope_scaling": {"type": "dynamic", "factor": 2.0}}""").RopeScaling);
    }

    [Fact]
    public void Harmless_fields_pass_and_unknown_ones_are_reported()
    {
        var c = Parse("{" + Gpt2 + """, "scale_attn_weights": true, "scale_attn_by_inverse_layer_idx": false, "reorder_and_upcast_attn": true, "resid_pdrop": 0.1, "architectures": ["GPT2LMHeadModel"]}""");
        Assert.Empty(c.UnrecognisedFields);
        var d = Parse("{" + Llama + """, "rope_scaling": null, "rope_theta": 10000, "sliding_window": 4096, "frobnicate": 1}""");
        Assert.Equal(["sliding_window", "frobnicate"], d.UnrecognisedFields);
        // the default rotary is the default
        Assert.Equal(10000, Parse("{" + Llama + """, "rope_scaling": {"rope_type": "default", "rope_theta": 10000}}""").RopeTheta);
    }

    // Qwen2.5-7B's config.json as published
    private const string Qwen25_7B = """
        {"architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151643, "hidden_act": "silu",
         "hidden_size": 3584, "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 131072, "max_window_layers": 28,
         "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
         "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
         "transformers_version": "4.43.1", "use_cache": true, "use_mrope": false, "use_sliding_window": false, "vocab_size": 152064}
        """;

    // Mistral-7B-v0.3's config.json as published (v0.1: rope_theta 10000, sliding_window 4096, vocab 32000)
    private const string Mistral7B = """
        {"architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
         "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
         "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
         "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.42.0.dev0",
         "use_cache": true, "vocab_size": 32768}
        """;

    [Fact]
    public void Qwen2_is_llamas_wiring_with_biases_on_q_k_v_and_its_window_only_when_used()
    {
        var c = Parse(Qwen25_7B);
        Assert.Empty(c.UnrecognisedFields);
        Assert.Equal(Architecture.Llama, c.Arch);
        Assert.Equal("qwen2", c.ModelType);
        Assert.True(c.QkvBias);
        Assert.False(c.AttnOutBias);
        Assert.False(c.MlpBias);
        Assert.True(c.GatedMlp);
        Assert.Equal((28, 4, 128, 1e6, 131072, 151643), (c.Heads, c.KvHeads, c.HeadDim, c.RopeTheta, c.MaxPositions, c.EosTokenId!.Value));
        Assert.Null(c.SlidingWindow); // use_sliding_window false
        Assert.Equal(0, c.AttentionWindow(27));
        // with the window on from layer 20 of 28: layers 0-19 attend fully, 20-27 through the window; the context stays 131072
        var w = Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("\"max_window_layers\": 28", "\"max_window_layers\": 20")
            .Replace("\"sliding_window\": 131072", "\"sliding_window\": 4096"));
        Assert.Equal((4096, 131072), (w.SlidingWindow!.Value, w.MaxPositions));
        Assert.Equal(Enumerable.Range(0, 28).Select(l => l >= 20 ? 4096 : 0), Enumerable.Range(0, 28).Select(w.AttentionWindow));
        // on, but from layer 28 of 28: no layer slides
        Assert.Null(Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true")).SlidingWindow);
        // max_window_layers 0: every layer slides (0 is a valid value here, unlike most integer fields)
        var all = Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("\"max_window_layers\": 28", "\"max_window_layers\": 0"));
        Assert.Equal((131072, 131072), (all.AttentionWindow(0), all.AttentionWindow(27)));
        // on with sliding_window null: Qwen2Config's window is None, no layer slides
        Assert.Null(Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("\"max_window_layers\": 28", "\"max_window_layers\": 0")
            .Replace("\"sliding_window\": 131072", "\"sliding_window\": null")).SlidingWindow);
        // absent fields take Qwen2Config's defaults: sliding_window 4096, max_window_layers 28 (of 30 layers here: 28 and 29 slide)
        var dflt = Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("\"max_window_layers\": 28,", "")
            .Replace("\"sliding_window\": 131072,", "").Replace("\"num_hidden_layers\": 28", "\"num_hidden_layers\": 30"));
        Assert.Equal((0, 4096, 4096), (dflt.AttentionWindow(27), dflt.AttentionWindow(28), dflt.AttentionWindow(29)));
        // layer_types (newer transformers) decides when given, one entry per layer
        string Types(string entries) => Qwen25_7B.Replace("\"use_sliding_window\": false", $"\"use_sliding_window\": true, \"layer_types\": [{entries}]")
            .Replace("\"sliding_window\": 131072", "\"sliding_window\": 4096");
        string Alternating(string odd) => string.Join(", ", Enumerable.Range(0, 28).Select(l => l % 2 == 1 ? odd : "\"full_attention\""));
        var alt = Parse(Types(Alternating("\"sliding_attention\"")));
        Assert.Equal(Enumerable.Range(0, 28).Select(l => l % 2 == 1 ? 4096 : 0), Enumerable.Range(0, 28).Select(alt.AttentionWindow));
        Assert.Null(Parse(Types(Alternating("\"full_attention\""))).SlidingWindow);
        var e1 = Assert.Throws<ModelFormatException>(() => Parse(Types("\"full_attention\", \"sliding_attention\"")));
        Assert.Equal("config.json: field 'layer_types' has 2 entries for 28 layers (num_hidden_layers): one per layer", e1.Message);
        var e2 = Assert.Throws<ModelFormatException>(() => Parse(Types(Alternating("\"chunked_attention\""))));
        Assert.Equal("config.json: field 'layer_types[1]' \"chunked_attention\" is not 'full_attention' or 'sliding_attention'", e2.Message);
        var e3 = Assert.Throws<ModelFormatException>(() => Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("\"max_window_layers\": 28", "\"max_window_layers\": -1")));
        Assert.Equal("config.json: field 'max_window_layers' must be a non-negative integer (got -1)", e3.Message);
        var e4 = Assert.Throws<ModelFormatException>(() => Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("\"sliding_window\": 131072", "\"sliding_window\": 0")));
        Assert.Equal("config.json: field 'sliding_window' must be positive (got 0)", e4.Message);
        var e = Assert.Throws<ModelFormatException>(() => Parse(Qwen25_7B.Replace("\"use_mrope\": false", "\"use_mrope\": true")));
        Assert.StartsWith("config.json: field 'use_mrope' true: ", e.Message);
    }

    [Fact]
    public void Mistral_is_llamas_wiring_without_biases_and_its_sliding_window_is_on_every_layer()
    {
        var c = Parse(Mistral7B);
        Assert.Empty(c.UnrecognisedFields);
        Assert.Equal(Architecture.Llama, c.Arch);
        Assert.False(c.QkvBias || c.AttnOutBias || c.MlpBias);
        Assert.Equal((32, 8, 128, 32768), (c.Heads, c.KvHeads, c.HeadDim, c.MaxPositions));
        Assert.Null(c.SlidingWindow); // null: full attention (v0.3)
        Assert.Equal(0, c.AttentionWindow(31));
        // v0.1: a window of 4096 on every layer; contexts past it run (the window slides), so the context is not capped
        var v01 = Parse(Mistral7B.Replace("\"sliding_window\": null", "\"sliding_window\": 4096"));
        Assert.Equal((4096, 32768, 4096, 4096), (v01.SlidingWindow!.Value, v01.MaxPositions, v01.AttentionWindow(0), v01.AttentionWindow(31)));
        // absent: MistralConfig's default, 4096 (transformers leaves fields at their default out of a saved config.json)
        Assert.Equal(4096, Parse(Mistral7B.Replace("\"sliding_window\": null,", "")).SlidingWindow);
        foreach (var bad in new[] { "0", "-4096" })
        {
            var e = Assert.Throws<ModelFormatException>(() => Parse(Mistral7B.Replace("\"sliding_window\": null", $"\"sliding_window\": {bad}")));
            Assert.Equal($"config.json: field 'sliding_window' must be positive (got {bad})", e.Message);
        }
        var f = Assert.Throws<ModelFormatException>(() => Parse(Mistral7B.Replace("\"sliding_window\": null", "\"sliding_window\": 4096.5")));
        Assert.Equal("config.json: field 'sliding_window' must be an integer", f.Message);
        // attention_bias is Llama's field, not Mistral's: reported, not read
        Assert.Equal(["attention_bias"], Parse(Mistral7B.Replace("\"use_cache\": true", "\"use_cache\": true, \"attention_bias\": true")).UnrecognisedFields);
    }
}
