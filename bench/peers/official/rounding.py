#!/usr/bin/env python3
"""How far each float32 side is from the float64 answer: reads two `palimpsest parity --out` folders
of the same case, one run in float32 and one with --f64, and prints per quantity the median and
largest relative difference of ours (f32) and the official code (f32) from ours in float64, next to
ours (f32) against the official (f32). Where both float32 sides are as far from the float64 answer
as from each other, their difference is rounding, not a difference in the method.

Usage: python3 rounding.py DIR_F32 DIR_F64"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_gpt2 import read_safetensors  # noqa: E402


def rel(a, b):
    return float((a - b).norm() / b.norm()) if float(b.norm()) > 0 else float("nan")


def delta_w(t, key):
    """ΔW of a ROME request (r{i}) or a MEMIT layer (l{l}) from its factors."""
    if key.startswith("r"):
        return torch.outer(t[key + ".u"], t[key + ".right"])
    return t[key + ".adj"] @ t[key + ".resid"].T


def main(d32, d64):
    o32, f32 = (read_safetensors(os.path.join(d32, n), torch.float64) for n in ("ours.safetensors", "official.safetensors"))
    exact = read_safetensors(os.path.join(d64, "ours.safetensors"), torch.float64)
    groups = sorted({k.split(".")[0] for k in exact if "." in k})
    rows = {}
    for g in groups:
        for q in sorted({k.split(".", 1)[1] for k in exact if k.startswith(g + ".")}) + ["dW"]:
            name = f"{g}.{q}"
            a, b, e = (delta_w(t, g) if q == "dW" else t[name] for t in (o32, f32, exact))
            rows.setdefault(q, []).append((rel(a, b), rel(a, e), rel(b, e)))
    if "z" in exact:  # MEMIT's z* [n, d], one row per request
        for i in range(exact["z"].shape[0]):
            a, b, e = (t["z"][i] for t in (o32, f32, exact))
            rows.setdefault("z*", []).append((rel(a, b), rel(a, e), rel(b, e)))
    print(f"{'quantity':10} {'ours32 vs official32':>24} {'ours32 vs f64':>24} {'official32 vs f64':>24}   (median / max)")
    for q, vals in rows.items():
        cols = []
        for j in range(3):
            v = sorted(x[j] for x in vals)
            cols.append(f"{v[len(v) // 2]:.1e} / {v[-1]:.1e}")
        print(f"{q:10} {cols[0]:>24} {cols[1]:>24} {cols[2]:>24}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: rounding.py DIR_F32 DIR_F64")
    main(sys.argv[1], sys.argv[2])
