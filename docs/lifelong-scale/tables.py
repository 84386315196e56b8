#!/usr/bin/env python3
"""Prints README.md's two tables (1,024 edits; the full stream) from the runs' lifelong.json files,
partial runs included (their last checkpoint, marked partial). Run from the repository root:
    python3 docs/lifelong-scale/tables.py"""
import json
import math
import os

OUT, STUDY = "docs/lifelong-scale", "docs/study/lifelong-shared"
MODELS = ["cf5k-gpt2-d128-l6", "cf5k-gpt2-d256-l6"]
RUNS_1024 = [("UltraEdit", 8, OUT, "ultraedit-b8"), ("ROME", 1, STUDY, "rome-b1"), ("ROME + norm anchors", 1, OUT, "rome-nas-b1"),
             ("MEMIT", 8, STUDY, "memit-b8"), ("MEMIT + norm anchors", 8, OUT, "memit-nas-b8"),
             ("AlphaEdit", 8, STUDY, "alphaedit-b8"), ("AlphaEdit + norm anchors", 8, OUT, "alphaedit-nas-b8")]
RUNS_FULL = [(m, "UltraEdit (B=8)", "ultraedit-b8-full") for m in MODELS] + [(m, "MEMIT (B=8)", "memit-b8-full") for m in MODELS]
RUNS_FULL = sorted(RUNS_FULL, key=lambda r: MODELS.index(r[0])) + [("facts-d128-l5", "UltraEdit (B=8)", "ultraedit-b8-full")]


def load(path):
    f = os.path.join(path, "lifelong.json")
    return json.load(open(f)) if os.path.exists(f) else None


def row(lead, path, bold):
    """A table row: the lead cells, then the run's last checkpoint (or "not started")."""
    d = load(path)
    if d is None or not d["checkpoints"]:
        return f"| {' | '.join(lead)} | not started |" + " |" * 7
    c = d["checkpoints"][-1]
    drift = math.sqrt(sum(v * v for v in c["delta_norms"].values()))
    last = d["checkpoints"][-1]["edits"]
    reached = f"{last:,} of {d['edits']:,}" + ("" if d.get("complete") else " (partial)")
    five = " | ".join(f"{c[k]:.3f}" for k in ("ES", "GS", "LS", "ERS", "ORS"))
    s = f"**{c['S']:.3f}**" if bold else f"{c['S']:.3f}"
    return f"| {' | '.join(lead)} | {reached} | {five} | {s} | {drift:.0f} |"


def main():
    print("| model | method | B | reached | ES | GS | LS | ERS | ORS | **S** at 1,024 | ‖ΔW‖ |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in MODELS:
        for name, b, root, run in RUNS_1024:
            print(row([m, name, str(b)], os.path.join(root, m, run), bold=True))
    print()
    print("| model | method | reached | ES | GS | LS | ERS | ORS | S | ‖ΔW‖ |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m, name, run in RUNS_FULL:
        print(row([m, name], os.path.join(OUT, m, run), bold=False))


if __name__ == "__main__":
    main()
