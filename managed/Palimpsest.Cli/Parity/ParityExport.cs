using System.Text.Json;
using System.Text.Json.Nodes;
using Palimpsest.Editing;
using Palimpsest.Models;
using Palimpsest.Tokenization;

namespace Palimpsest.Cli.Parity;

/// <summary>
/// Fills the work folder run_official.py reads: parity-in.json (method, model folder, the official
/// hparams, the requests in the reference's layout, our context templates), stats.safetensors
/// (our C = E[k kᵀ] per edited layer, float64; the identity where MEMIT runs without
/// mom2_adjustment, since the official MEMIT always reads C) and gpt2.ranks (our vocabulary).
/// </summary>
internal static class ParityExport
{
    // The official dataclasses take exactly these fields (rome/rome_hparams.py, memit/memit_hparams.py);
    // ours carry the same names, plus our own (the template seed, the early-stop loss, NAS), left out.
    private static readonly string[] RomeFields = ["layers", "fact_token", "v_num_grad_steps", "v_lr", "v_loss_layer", "v_weight_decay",
        "clamp_norm_factor", "kl_factor", "mom2_adjustment", "context_template_length_params"];
    private static readonly string[] MemitFields = ["layers", "fact_token", "v_num_grad_steps", "v_lr", "v_loss_layer", "v_weight_decay",
        "clamp_norm_factor", "kl_factor", "mom2_adjustment", "mom2_update_weight"];

    /// <summary>The early-stop loss the official code has written in (compute_v / compute_z: `if loss &lt; 5e-2`).</summary>
    public const double OfficialEarlyStop = 5e-2;

    public static void Write(string work, LoadedModel lm, string modelFolder, string method, string ourHparamsJson,
        IReadOnlyList<EditRequest> reqs, object templates, IReadOnlyDictionary<int, double[]> secondMoments, bool f64)
    {
        var ours = JsonNode.Parse(ourHparamsJson)!.AsObject();
        var hp = new JsonObject();
        foreach (var k in method == Editors.Rome.Name ? RomeFields : MemitFields) hp[k] = ours[k]?.DeepClone();
        if (method == Editors.Memit.Name) hp["layer_selection"] = "all";
        hp["rewrite_module_tmp"] = "transformer.h.{}.mlp.c_proj";
        hp["layer_module_tmp"] = "transformer.h.{}";
        hp["mlp_module_tmp"] = "transformer.h.{}.mlp";
        hp["attn_module_tmp"] = "transformer.h.{}.attn";
        hp["ln_f_module"] = "transformer.ln_f";
        hp["lm_head_module"] = "transformer.wte";
        // the statistics are injected; these name what the code would have computed them from
        hp["mom2_dataset"] = "wikipedia";
        hp["mom2_n_samples"] = 100000;
        hp["mom2_dtype"] = "float32";

        var spec = new JsonObject
        {
            ["method"] = method,
            ["dtype"] = f64 ? "float64" : "float32",
            ["model_dir"] = Path.GetFullPath(modelFolder),
            ["model_name"] = Path.GetFileName(Path.GetFullPath(modelFolder)),
            ["eos_id"] = lm.Tok.EosId ?? throw new CliUsageException($"parity: {modelFolder}'s tokenizer has no end-of-text token (the official code pads with it)"),
            ["hparams"] = hp,
            ["templates"] = JsonSerializer.SerializeToNode(templates),
            ["requests"] = new JsonArray(reqs.Select((r, i) => (JsonNode)new JsonObject
            {
                ["case_id"] = i, ["prompt"] = r.Prompt, ["subject"] = r.Subject, ["target_new"] = new JsonObject { ["str"] = r.TargetNew },
            }).ToArray()),
        };
        File.WriteAllText(Path.Combine(work, "parity-in.json"), spec.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

        var stats = new ParityTensors();
        foreach (var (layer, c) in secondMoments) stats.Add($"C.{layer}", c, lm.Config.DFf, lm.Config.DFf);
        stats.Save(Path.Combine(work, "stats.safetensors"));

        var ranks = TokenizerFactory.ByteRanks(lm.Tok)
            ?? throw new CliUsageException($"parity: {modelFolder} does not use the built-in GPT-2 encoding ({lm.Tok.Source}); the Python side reads only that vocabulary");
        File.WriteAllLines(Path.Combine(work, "gpt2.ranks"), ranks.Select(p => $"{Convert.ToBase64String(p.Bytes)} {p.Rank}"));
    }

    /// <summary>C = I [f, f], for MEMIT without mom2_adjustment (our plain ridge; the official MEMIT reads C regardless).</summary>
    public static double[] Identity(int f)
    {
        var c = new double[(long)f * f];
        for (int i = 0; i < f; i++) c[(long)i * f + i] = 1;
        return c;
    }
}
