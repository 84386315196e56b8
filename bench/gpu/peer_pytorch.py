"""PyTorch + transformers peer of Palimpsest.GpuBench: GPT2LMHeadModel with GPT2-XL shapes and
random weights, timed with CUDA events (median of a few runs after a warm-up). Writes torch.json.

fp32 runs with TF32 off (as the engine's default), fp16 is model.half(). Forward 1x128 and a batch
of 10x32 (one call, batched: the engine runs the 10 sequences one after another), decode ms/token
with past_key_values (prefill 32, then 64 single-token steps), and forward+backward 10x32 fp32.
Usage: python3 bench/gpu/peer_pytorch.py [--out DIR] [--layers N]
"""
import argparse
import json
import os
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

p = argparse.ArgumentParser()
p.add_argument("--out", default=".")
p.add_argument("--layers", type=int, default=48)
a = p.parse_args()

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = torch.device("cuda")
g = torch.Generator(device="cpu").manual_seed(5)


def median_ms(fn, reps, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        e.synchronize()
        ts.append(s.elapsed_time(e))
    ts.sort()
    return ts[len(ts) // 2]


cfg = GPT2Config(n_layer=a.layers, n_embd=1600, n_head=25, n_inner=6400, vocab_size=50257, n_positions=1024,
                 activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
t0 = time.time()
with torch.device(dev):
    model = GPT2LMHeadModel(cfg)
model.eval()
print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, model ready in {time.time() - t0:.1f} s, "
      f"attention: {getattr(model.config, '_attn_implementation', '?')}", flush=True)

ids128 = torch.randint(0, 50257, (1, 128), generator=g).to(dev)
ids10 = torch.randint(0, 50257, (10, 32), generator=g).to(dev)
steps = torch.randint(0, 50257, (64,), generator=g).to(dev)
res = {}


def report(key, ms):
    res[key] = ms
    print(f"{key:<40} {ms:10.3f} ms", flush=True)


for tag in ["fp32", "fp16"]:
    if tag == "fp16":
        model = model.half()
    with torch.no_grad():
        report(f"{tag} forward 1x128", median_ms(lambda: model(ids128, use_cache=False), 5))
        report(f"{tag} forward 10x32", median_ms(lambda: model(ids10, use_cache=False), 3))

        def decode():
            out = model(ids10[:1], use_cache=True)
            past = out.past_key_values
            for t in range(steps.shape[0]):
                out = model(steps[t:t + 1].view(1, 1), past_key_values=past, use_cache=True)
                past = out.past_key_values

        total = median_ms(decode, 3)
        prefill = median_ms(lambda: model(ids10[:1], use_cache=True), 3)
        report(f"{tag} decode ms/token", (total - prefill) / steps.shape[0])
    if tag == "fp32":
        def fwd_bwd():
            model.zero_grad(set_to_none=False)
            out = model(ids10, labels=ids10, use_cache=False)
            out.loss.backward()

        report(f"{tag} forward+backward 10x32", median_ms(fwd_bwd, 2))
        model.zero_grad(set_to_none=True)

os.makedirs(a.out, exist_ok=True)
with open(os.path.join(a.out, "torch.json"), "w") as f:
    json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "results_ms": res}, f, indent=2)
