#!/usr/bin/env python3
"""Runs the official ROME or MEMIT code (kmeng01/memit, which holds rome/ as well), unchanged, on a
model and requests the engine exported, with the engine's key statistics and context templates
injected where the code would compute or generate them, and writes what it computed.

Usage (the engine's `palimpsest parity` runs it): python3 run_official.py WORK OFFICIAL_DIR
  WORK/parity-in.json     method, model folder, official hparams, requests, templates, eos id
  WORK/stats.safetensors  C = E[k kᵀ] [f, f] per edited layer ("C.{layer}", float64)
  WORK/gpt2.ranks         the vocabulary: base64 bytes and rank per line
writes WORK/official.safetensors (float64 copies of the float32 results) and WORK/official.json.
OFFICIAL_DIR must hold rome/, memit/, util/ and globals.yml (util/globals.py reads it from the
working directory, so this script changes into it). Everything runs in float32 on the CPU, as the
code creates it, except MEMIT's solve, which the code itself does in float64."""
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import stand_ins  # noqa: E402
from gpt2_bpe import Gpt2Bpe  # noqa: E402
from hf_gpt2 import load_gpt2, read_safetensors, write_safetensors  # noqa: E402


def target_prob(model, tok, prompt, target):
    """exp(mean_j log p(target_j | prompt, target_<j)), prompt and " " + target tokenised apart (TargetScorer)."""
    p, t = tok.encode(prompt), tok.encode(" " + target.lstrip())
    ids = torch.tensor([p + t[:-1]])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    rows = range(len(p) - 1, len(p) - 1 + len(t))
    return float(torch.exp(torch.stack([logp[r, tid] for r, tid in zip(rows, t)]).mean()))


def main(work, official):
    with open(os.path.join(work, "parity-in.json")) as f:
        spec = json.load(f)
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("PARITY_THREADS", "1")))
    stand_ins.install()
    os.chdir(official)
    sys.path.insert(0, official)
    from util import nethook  # noqa: E402

    # float32 as the reference runs; float64 (the model and the injected statistics) to tell rounding apart
    wide = spec.get("dtype") == "float64"
    model = load_gpt2(spec["model_dir"], spec["model_name"], torch.float64 if wide else torch.float32)
    narrow = (lambda t: t) if wide else (lambda t: t.float())
    tok = Gpt2Bpe(os.path.join(work, "gpt2.ranks"), spec["eos_id"])
    stats = read_safetensors(os.path.join(work, "stats.safetensors"), torch.float64)
    requests, hp = spec["requests"], spec["hparams"]
    out, started = {}, time.time()
    prob = lambda r: target_prob(model, tok, r["prompt"].format(r["subject"]), r["target_new"]["str"])  # noqa: E731
    before = [prob(r) for r in requests]

    def layer_of(module_name):
        return int(module_name.split(".")[2])  # transformer.h.{layer}.mlp.c_proj

    if spec["method"] == "rome":
        import rome.compute_u
        import rome.compute_v
        import rome.repr_tools
        import rome.rome_main
        from rome.rome_hparams import ROMEHyperParams

        # injected: C⁻¹ (the code inverts its own statistics; here the engine's, inverted in
        # float64 and cast to float32 as get_inv_cov casts), and the engine's context templates
        rome.compute_u.get_inv_cov = lambda m, t, name, *a: narrow(torch.linalg.inv(stats[f"C.{layer_of(name)}"]))
        rome.rome_main.get_context_templates = lambda *a: spec["templates"]
        # recorded: k̄ (compute_u's mean over the templates) and the prompt's key and MLP output
        # (compute_v's cur_input, cur_output), by wrapping the functions the code calls by name
        seen = {}
        reprs, io_at = rome.repr_tools.get_reprs_at_word_tokens, rome.compute_v.get_module_input_output_at_word

        def rec_reprs(*a, **k):
            r = reprs(*a, **k)
            if k.get("track") == "in":
                seen["kbar"] = r.mean(0)
            return r

        def rec_io(*a, **k):
            r = io_at(*a, **k)
            seen["kp"], seen["vcur"] = r
            return r

        rome.repr_tools.get_reprs_at_word_tokens = rec_reprs
        rome.compute_v.get_module_input_output_at_word = rec_io
        hparams = ROMEHyperParams(**hp)
        after = []
        for i, r in enumerate(requests):
            deltas = rome.rome_main.execute_rome(model, tok, r, hparams)
            (name, (u, right)), = deltas.items()
            # v* from the right vector as compute_v made it: right = (v* − v_cur) / (k_p · u)
            vstar = right * torch.dot(seen["kp"], u) + seen["vcur"]
            for key, t in [("u", u), ("right", right), ("kbar", seen["kbar"]), ("kp", seen["kp"]), ("vstar", vstar)]:
                out[f"r{i}.{key}"] = t.detach().double()
            w = nethook.get_parameter(model, name)
            saved = w.detach().clone()
            with torch.no_grad():
                w[...] += rome.rome_main.upd_matrix_match_shape(u.unsqueeze(1) @ right.unsqueeze(0), w.shape)
            after.append(prob(r))
            with torch.no_grad():
                w[...] = saved
    else:
        import memit.compute_ks
        import memit.memit_main
        from memit.memit_hparams import MEMITHyperParams

        memit.memit_main.get_cov = lambda m, t, name, *a, **k: narrow(stats[f"C.{layer_of(name)}"])
        memit.memit_main.get_context_templates = lambda *a: spec["templates"]
        zs, ks = [], []
        compute_z, compute_ks = memit.memit_main.compute_z, memit.memit_main.compute_ks
        memit.memit_main.compute_z = lambda *a, **k: zs.append(compute_z(*a, **k)) or zs[-1]
        memit.memit_main.compute_ks = lambda *a, **k: ks.append(compute_ks(*a, **k)) or ks[-1]
        hparams = MEMITHyperParams(**hp)
        deltas = memit.memit_main.execute_memit(model, tok, requests, hparams)
        out["z"] = torch.stack(zs).detach().double()                     # [n, d]
        saved = {}
        for li, layer in enumerate(hp["layers"]):
            name = hparams.rewrite_module_tmp.format(layer) + ".weight"
            adj, resid = deltas[name]                                    # [f, n], [d, n] (float64)
            out[f"l{layer}.adj"], out[f"l{layer}.resid"] = adj.double(), resid.double()
            out[f"l{layer}.keys"] = ks[li].detach().double()             # [n, f]
            w = nethook.get_parameter(model, name)
            saved[name] = w.detach().clone()
            with torch.no_grad():
                w[...] += narrow(memit.memit_main.upd_matrix_match_shape(adj @ resid.T, w.shape))
        after = [prob(r) for r in requests]
        with torch.no_grad():
            for name, w0 in saved.items():
                nethook.get_parameter(model, name)[...] = w0

    write_safetensors(os.path.join(work, "official.safetensors"), out)
    with open(os.path.join(work, "official.json"), "w") as f:
        json.dump({"prob_before": before, "prob_after": after, "seconds": time.time() - started,
                   "torch": torch.__version__, "tokenized": tok.log}, f)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: run_official.py WORK OFFICIAL_DIR")
    main(os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]))
