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
        // with the window on from layer 20 of 28, the context is capped at the window
        var w = Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true").Replace("\"max_window_layers\": 28", "\"max_window_layers\": 20")
            .Replace("\"sliding_window\": 131072", "\"sliding_window\": 4096"));
        Assert.Equal((4096, 4096), (w.SlidingWindow!.Value, w.MaxPositions));
        // on, but from layer 28 of 28: no layer slides
        Assert.Null(Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true")).SlidingWindow);
        // layer_types (newer transformers) decides when given
        Assert.Equal(4096, Parse(Qwen25_7B.Replace("\"use_sliding_window\": false", "\"use_sliding_window\": true, \"layer_types\": [\"full_attention\", \"sliding_attention\"]")
            .Replace("\"sliding_window\": 131072", "\"sliding_window\": 4096")).SlidingWindow);
        var e = Assert.Throws<ModelFormatException>(() => Parse(Qwen25_7B.Replace("\"use_mrope\": false", "\"use_mrope\": true")));
        Assert.StartsWith("config.json: field 'use_mrope' true: ", e.Message);
    }

    [Fact]
    public void Mistral_is_llamas_wiring_without_biases_and_a_sliding_window_caps_its_context()
    {
        var c = Parse(Mistral7B);
        Assert.Empty(c.UnrecognisedFields);
        Assert.Equal(Architecture.Llama, c.Arch);
        Assert.False(c.QkvBias || c.AttnOutBias || c.MlpBias);
        Assert.Equal((32, 8, 128, 32768), (c.Heads, c.KvHeads, c.HeadDim, c.MaxPositions));
        Assert.Null(c.SlidingWindow);
        var v01 = Parse(Mistral7B.Replace("\"sliding_window\": null", "\"sliding_window\": 4096"));
        Assert.Equal((4096, 4096), (v01.SlidingWindow!.Value, v01.MaxPositions));
        var e = Assert.Throws<ModelFormatException>(() => Parse(Mistral7B.Replace("\"sliding_window\": null", "\"sliding_window\": 0")));
        Assert.Contains("'sliding_window'", e.Message);
        // attention_bias is Llama's field, not Mistral's: reported, not read
        Assert.Equal(["attention_bias"], Parse(Mistral7B.Replace("\"use_cache\": true", "\"use_cache\": true, \"attention_bias\": true")).UnrecognisedFields);
    }
}
