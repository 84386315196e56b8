"""Prints ONE markdown table, engine vs PyTorch (ratio = engine / PyTorch time: below 1 is faster),
from engine.json and torch.json. Usage: python3 bench/gpu/combine.py DIR > table.md"""
import json
import os
import sys

d = sys.argv[1]


def load(name):
    try:
        with open(os.path.join(d, name)) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"device": f"missing ({e})", "results_ms": {}}


eng, tor = load("engine.json"), load("torch.json")
E, T = eng["results_ms"], tor["results_ms"]
print(f"Card: {eng.get('device')} | PyTorch: {tor.get('torch', '?')} on {tor.get('device')}\n")
print("| measurement (GPT2-XL shapes, random weights) | engine ms | PyTorch ms | engine / PyTorch |")
print("|---|---:|---:|---:|")
keys = [k for k in E if not k.startswith(("sgemm", "copy", "op us "))] + [k for k in T if k not in E]
for k in keys:
    e, t = E.get(k), T.get(k)
    ratio = f"{e / t:.2f}" if e is not None and t else ""
    fmt = lambda v: "" if v is None else f"{v:.3f}"
    print(f"| {k} | {fmt(e)} | {fmt(t)} | {ratio} |")
if "sgemm 4096^3 TFLOP/s" in E:
    print(f"\nCeilings measured by the engine: sgemm 4096^3 fp32 (TF32 off) {E['sgemm 4096^3 TFLOP/s']:.1f} TFLOP/s, "
          f"device copy {E.get('copy GB/s', 0):.0f} GB/s (read + write).")
ops = [k for k in E if k.startswith("op us ")]
if ops:
    print("\nDevice time per op (each op 200x in one CUDA graph; layer 0's weights; T=1: a decode step over 64 cached keys):\n")
    print("| op | µs |")
    print("|---|---:|")
    for k in ops:
        print(f"| {k[len('op us '):]} | {E[k]:.2f} |")
