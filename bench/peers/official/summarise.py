#!/usr/bin/env python3
"""One Markdown row per `palimpsest parity --out DIR` run (its report.json): the largest relative
difference of each quantity over requests (and layers), MEMIT's whole-batch ΔW per layer, and the
mean target probability after the edits on both sides.

Usage: python3 summarise.py DIR [DIR ...]"""
import json
import os
import sys


def row(d):
    r = json.load(open(os.path.join(d, "report.json")))
    rows = r["rows"]
    worst = lambda q: max((x["rel_diff"] for x in rows if x["quantity"] == q and x["request"] is not None), default=None)  # noqa: E731
    median = lambda q: sorted(x["rel_diff"] for x in rows if x["quantity"] == q and x["request"] is not None)[len([x for x in rows if x["quantity"] == q and x["request"] is not None]) // 2]  # noqa: E731
    dtype = "float64" if any("float64" in s for s in r["summary"]) else "float32"
    if r["method"] == "rome":
        dw = f"{worst('dW'):.1e} (median {median('dW'):.1e})"
        first, value = worst("k̄"), worst("v*")
    else:
        batch = [f"{x['rel_diff']:.1e}" for x in rows if x["quantity"] == "dW" and x["request"] is None]
        dw = " / ".join(batch) + f" (terms ≤ {worst('dW'):.1e})"
        # the first tensor: keys at the first edited layer (later layers' keys follow the earlier layers' edits)
        first = max(x["rel_diff"] for x in rows if x["quantity"] == "key" and x["layer"] == r["layers"][0])
        value = worst("z*")
    po, pf = r["prob_after_ours"], r["prob_after_official"]
    mean = lambda p: sum(p) / len(p)  # noqa: E731
    model = os.path.basename(r["model"].rstrip("/"))
    layers = ",".join(str(x) for x in r["layers"])
    return (f"| {model} | {r['method']} | {layers} | {dtype} | {r['requests']} | {dw} | {first:.1e} | {value:.1e} "
            f"| {mean(po):.4f} / {mean(pf):.4f} |")


if __name__ == "__main__":
    print("| model | method | layers | precision | requests | ΔW rel diff (ROME: max over requests; MEMIT: the batch's, per layer) "
          "| k̄ / keys at the first layer (max) | v* / z* (max) | p(target) after, mean (ours / official) |")
    print("|---|---|---|---|---:|---|---:|---:|---|")
    for d in sys.argv[1:]:
        print(row(d))
