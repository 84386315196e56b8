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


def cells(c):
    drift = math.sqrt(sum(v * v for v in c["delta_norms"].values()))
    return [f"{c[k]:.3f}" for k in ("ES", "GS", "LS", "ERS", "ORS")], c["S"], f"{drift:.0f}"


def reached(d):
    last = d["checkpoints"][-1]["edits"]
    return f"{last:,} of {d['edits']:,}" + ("" if d.get("complete") else " (partial)")


def main():
    print("| model | method | B | reached | ES | GS | LS | ERS | ORS | **S** at 1,024 | ‖ΔW‖ |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in MODELS:
        for name, b, root, run in RUNS_1024:
            d = load(os.path.join(root, m, run))
            if d is None or not d["checkpoints"]:
                print(f"| {m} | {name} | {b} | not started | | | | | | | |")
                continue
            five, s, drift = cells(d["checkpoints"][-1])
            print(f"| {m} | {name} | {b} | {reached(d)} | {' | '.join(five)} | **{s:.3f}** | {drift} |")
    print()
    print("| model | method | reached | ES | GS | LS | ERS | ORS | S | ‖ΔW‖ |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m, name, run in RUNS_FULL:
        d = load(os.path.join(OUT, m, run))
        if d is None or not d["checkpoints"]:
            print(f"| {m} | {name} | not started | | | | | | | |")
            continue
        five, s, drift = cells(d["checkpoints"][-1])
        print(f"| {m} | {name} | {reached(d)} | {' | '.join(five)} | {s:.3f} | {drift} |")


if __name__ == "__main__":
    main()
