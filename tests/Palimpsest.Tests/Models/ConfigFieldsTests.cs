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

    private const string Gpt2 = """
        "model_type": "gpt2", "n_embd": 32, "n_head": 4, "n_layer": 2, "vocab_size": 1000, "n_positions": 64
        """;

    [Theory]
    // Llama 3.1: top-level rope_theta beside rope_scaling with rope_type llama3 (ran without its scaling before)
    [InlineData("{" + Llama + """, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}""",
        "rope_scaling.rope_type", "'llama3'")]
    // the older spelling of long-context Llama 2 variants
    [InlineData("{" + Llama + """, "rope_scaling": {"type": "linear", "factor": 2.0}}""", "rope_scaling.type", "'linear'")]
    [InlineData("{" + Llama + """, "rope_scaling": {"type": "dynamic", "factor": 2.0}}""", "rope_scaling.type", "'dynamic'")]
    [InlineData("{" + Gpt2 + """, "scale_attn_by_inverse_layer_idx": true}""", "scale_attn_by_inverse_layer_idx", "true")]
    [InlineData("{" + Gpt2 + """, "scale_attn_weights": false}""", "scale_attn_weights", "false")]
    public void A_field_that_changes_the_arithmetic_and_is_not_implemented_is_refused(string json, string field, string value)
    {
        var e = Assert.Throws<ModelFormatException>(() => Parse(json));
        Assert.StartsWith($"config.json: field '{field}' {value}: ", e.Message);
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
}
