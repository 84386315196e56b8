using System.Text.Json;

namespace Palimpsest.Models;

/// <summary>
/// The rule for config.json: every field that changes the arithmetic is implemented or refused with
/// one line naming it and its value; the fields known to change nothing we compute are listed here,
/// once; anything else is reported by `info` as unrecognised. (A Llama 3.1 config's
/// "rope_scaling": {"rope_type": "llama3", …} used to run without its scaling, silently.)
/// </summary>
public static class ConfigFields
{
    /// <summary>Fields every architecture may carry that do not change the forward: training, generation and bookkeeping settings.</summary>
    public static readonly IReadOnlyList<string> Harmless =
    [
        "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "bos_token_id", "eos_token_id", "pad_token_id",
        "sep_token_id", "decoder_start_token_id", "initializer_range", "use_cache", "tokenizer_class", "task_specific_params", "_name_or_path",
        "attn_pdrop", "embd_pdrop", "resid_pdrop", "summary_activation", "summary_first_dropout", "summary_proj_to_labels", "summary_type",
        "summary_use_proj", "n_ctx", "attention_dropout", "hidden_dropout", "classifier_dropout", "pretraining_tp", "quantization_config",
        "torchscript", "id2label", "label2id", "problem_type", "is_decoder", "output_hidden_states", "output_attentions", "return_dict",
        "gradient_checkpointing", "initializer_factor", "attention_probs_dropout_prob", "hidden_dropout_prob", "bad_words_ids",
        // only with an encoder (encoder-decoder use); a decoder-only checkpoint has no cross-attention weights
        "add_cross_attention",
        // GPT-2's float16 safeguard: attention computed in float32 — we compute in float32 or float64 always
        "reorder_and_upcast_attn",
        // GPT-NeoX: a training-time choice of kernel
        "use_flash_attn",
    ];

    /// <summary>The fields each architecture reads (besides <see cref="Harmless"/>).</summary>
    public static readonly IReadOnlyDictionary<string, IReadOnlyList<string>> Read = new Dictionary<string, IReadOnlyList<string>>
    {
        ["gpt2"] = ["n_embd", "n_head", "n_inner", "n_layer", "vocab_size", "n_positions", "layer_norm_epsilon", "activation_function",
            "tie_word_embeddings", "scale_attn_weights", "scale_attn_by_inverse_layer_idx"],
        ["gptj"] = ["n_embd", "n_head", "n_inner", "n_layer", "vocab_size", "n_positions", "layer_norm_epsilon", "activation_function",
            "rotary_dim", "tie_word_embeddings", "rope_scaling", "rope_parameters"],
        ["gpt_neox"] = ["hidden_size", "num_attention_heads", "num_hidden_layers", "intermediate_size", "vocab_size", "max_position_embeddings",
            "layer_norm_eps", "hidden_act", "rotary_pct", "partial_rotary_factor", "rotary_emb_base", "rope_theta", "use_parallel_residual",
            "attention_bias", "tie_word_embeddings", "rope_scaling", "rope_parameters"],
        ["llama"] = ["hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers", "intermediate_size",
            "vocab_size", "max_position_embeddings", "rms_norm_eps", "hidden_act", "rope_theta", "attention_bias", "mlp_bias",
            "tie_word_embeddings", "rope_scaling", "rope_parameters"],
        ["mistral"] = ["hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers", "intermediate_size",
            "vocab_size", "max_position_embeddings", "rms_norm_eps", "hidden_act", "rope_theta", "sliding_window",
            "tie_word_embeddings", "rope_scaling", "rope_parameters"],
        ["qwen2"] = ["hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim", "num_hidden_layers", "intermediate_size",
            "vocab_size", "max_position_embeddings", "rms_norm_eps", "hidden_act", "rope_theta", "use_sliding_window", "sliding_window",
            "max_window_layers", "layer_types", "use_mrope", "tie_word_embeddings", "rope_scaling", "rope_parameters"],
    };

    /// <summary>Refuses, with one line naming the field and value, config fields that change the arithmetic and are not implemented.</summary>
    public static void RefuseUnimplemented(JsonElement j, string modelType, string file)
    {
        ModelFormatException Refuse(string field, string value, string what) => new($"{file}: field '{field}' {value}: {what}");
        foreach (var block in new[] { "rope_scaling", "rope_parameters" })
        {
            if (!j.TryGetProperty(block, out var rp) || rp.ValueKind == JsonValueKind.Null) continue;
            if (rp.ValueKind != JsonValueKind.Object) throw Refuse(block, rp.GetRawText(), "expected an object or null");
            // "rope_type" (transformers ≥ 4.43) or the older "type" spelling
            foreach (var key in new[] { "rope_type", "type" })
                if (rp.TryGetProperty(key, out var t) && t.ValueKind == JsonValueKind.String && t.GetString() is { } kind && kind != "default"
                    && !(modelType != "gptj" && kind is "linear" or "llama3" or "dynamic"))
                    throw Refuse($"{block}.{key}", $"'{kind}'", "this rotary scaling is not implemented yet (it changes the rotations at every position, "
                        + "so running without it would give wrong logits); default, linear, dynamic and llama3 run");
        }
        if (modelType == "qwen2" && j.TryGetProperty("use_mrope", out var mrope) && mrope.ValueKind == JsonValueKind.True)
            throw Refuse("use_mrope", "true", "multimodal rotary positions (Qwen2-VL) are not implemented");
        if (modelType == "gpt2")
        {
            if (j.TryGetProperty("scale_attn_by_inverse_layer_idx", out var inv) && inv.ValueKind == JsonValueKind.True)
                throw Refuse("scale_attn_by_inverse_layer_idx", "true", "attention scores divided by the layer index as well is not implemented");
            if (j.TryGetProperty("scale_attn_weights", out var sw) && sw.ValueKind == JsonValueKind.False)
                throw Refuse("scale_attn_weights", "false", "attention without the 1/√head_dim scale is not implemented");
        }
    }

    /// <summary>Top-level fields of the config that the architecture neither reads nor lists as harmless.</summary>
    public static IReadOnlyList<string> Unrecognised(JsonElement j, string modelType) =>
        Read.TryGetValue(modelType, out var read)
            ? j.EnumerateObject().Select(p => p.Name).Where(n => !read.Contains(n) && !Harmless.Contains(n)).ToList()
            : [];
}
