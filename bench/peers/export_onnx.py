#!/usr/bin/env python3
"""Exports the plain-torch GPT-2 small of gpt2_torch.py (random weights, seed 0) to ONNX for the
ONNX Runtime peer (bench/Palimpsest.Bench/OnnxGpt2Benchmarks.cs):
    gpt2_prefill.onnx  ids [1, 128] int64 -> logits [1, 128, V], present_k, present_v [12, 1, 12, 128, 64]
    gpt2_decode.onnx   ids [1, 1], past_k, past_v [12, 1, 12, P, 64] -> logits [1, 1, V], present_k, present_v
Usage: /usr/bin/python3 bench/peers/export_onnx.py [OUT_DIR]   (default /tmp/palimpsest-peers;
each file is ~0.5 GB of float32 weights, so it is written outside the repository)."""
import os, sys
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import make_gpt2_small  # noqa: E402


class Prefill(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, ids):
        pk, pv = self.m.empty_past(ids.shape[0])
        return self.m(ids, pk, pv)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/palimpsest-peers"
    os.makedirs(out, exist_ok=True)
    m = make_gpt2_small()
    ids = torch.randint(0, 50257, (1, 128), generator=torch.Generator().manual_seed(2))
    names = ["logits", "present_k", "present_v"]
    with torch.no_grad():
        torch.onnx.export(Prefill(m), (ids,), os.path.join(out, "gpt2_prefill.onnx"),
                          input_names=["ids"], output_names=names, opset_version=14)
        _, pk, pv = m(ids, *m.empty_past())
        nxt = torch.tensor([[17]])
        torch.onnx.export(m, (nxt, pk, pv), os.path.join(out, "gpt2_decode.onnx"),
                          input_names=["ids", "past_k", "past_v"], output_names=names, opset_version=14,
                          dynamic_axes={"past_k": {3: "past"}, "past_v": {3: "past"},
                                        "present_k": {3: "total"}, "present_v": {3: "total"}})
    print("wrote", out)


if __name__ == "__main__":
    main()
