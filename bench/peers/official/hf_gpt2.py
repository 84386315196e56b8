"""GPT-2 in plain torch with Hugging Face's module names and layouts, for running the official
ROME/MEMIT code (which finds modules by name: transformer.h.{i}.mlp.c_proj, transformer.ln_f,
transformer.wte, ...) where transformers cannot be installed. Loads a GPT-2 safetensors checkpoint
(F16/BF16/F32/F64, widened to the dtype asked for) without the safetensors package.

Layouts as in transformers' GPT2LMHeadModel: Conv1D weights are [in, out] (y = x W + b); a block
returns a tuple whose [0] is the hidden state (memit/compute_z.py edits cur_out[0]); the MLP returns
a tensor (rome/compute_v.py edits it in place); the head is tied to wte; positions are 0..T-1 whatever
the padding, as transformers' GPT-2 numbers them when no position_ids are given.

Shapes: input_ids, attention_mask [B, T]; logits [B, T, V]."""
import json
import math
import struct
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path, dtype=torch.float32):
    """name -> tensor (float tensors converted to dtype); BF16 is widened through its upper half-word."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        blob = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        raw = blob[a:b]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_DTYPES[info["dtype"]])
        t = torch.from_numpy(arr.copy()).reshape(info["shape"])
        out[name] = t.to(dtype) if t.is_floating_point() else t
    return out


def write_safetensors(path, tensors):
    """tensors: name -> float64/float32/int64 tensor; written as F64/F32/I64."""
    names = {torch.float64: "F64", torch.float32: "F32", torch.int64: "I64"}
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().contiguous().cpu().numpy().tobytes()
        header[name] = {"dtype": names[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class Conv1D(nn.Module):
    """transformers' Conv1D: weight [in, out], y [.., out] = x [.., in] @ W + b."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.c_attn, self.c_proj = Conv1D(d, 3 * d), Conv1D(d, d)

    def forward(self, x, allowed):
        B, T, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (t.view(B, T, self.heads, self.hd).transpose(1, 2) for t in (q, k, v))  # [B, H, T, hd]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)                          # [B, H, T, T]
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        att = torch.softmax(scores, dim=-1) @ v                                            # [B, H, T, hd]
        return self.c_proj(att.transpose(1, 2).reshape(B, T, d))


class MLP(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.c_fc, self.c_proj = Conv1D(d, f), Conv1D(f, d)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))                      # gelu_new


class Block(nn.Module):
    def __init__(self, d, heads, f, eps):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.attn, self.mlp = Attention(d, heads), MLP(d, f)

    def forward(self, x, allowed):
        x = x + self.attn(self.ln_1(x), allowed)
        x = x + self.mlp(self.ln_2(x))
        return (x,)


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c.vocab_size, c.n_embd), nn.Embedding(c.n_positions, c.n_embd)
        self.h = nn.ModuleList(Block(c.n_embd, c.n_head, c.n_inner, c.layer_norm_epsilon) for _ in range(c.n_layer))
        self.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_epsilon)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = Transformer(config)

    def forward(self, input_ids, attention_mask=None, **_):
        B, T = input_ids.shape
        pos = torch.arange(T).unsqueeze(0)
        x = self.transformer.wte(input_ids) + self.transformer.wpe(pos)
        # query t sees keys 0..t that are not padding
        allowed = torch.ones(T, T, dtype=torch.bool).tril().view(1, 1, T, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool().view(B, 1, 1, T)
        for block in self.transformer.h:
            x = block(x, allowed)[0]
        logits = self.transformer.ln_f(x) @ self.transformer.wte.weight.T                # tied head
        return SimpleNamespace(logits=logits)


def load_gpt2(folder, name, dtype=torch.float32):
    """The model of folder/config.json + folder/model.safetensors in dtype, eval mode."""
    with open(f"{folder}/config.json") as f:
        j = json.load(f)
    c = SimpleNamespace(
        vocab_size=j["vocab_size"], n_embd=j["n_embd"], n_layer=j["n_layer"], n_head=j["n_head"],
        n_positions=j["n_positions"], n_inner=j.get("n_inner") or 4 * j["n_embd"],
        layer_norm_epsilon=j.get("layer_norm_epsilon", 1e-5), _name_or_path=name)
    model = GPT2LMHeadModel(c)
    weights = read_safetensors(f"{folder}/model.safetensors", dtype)
    state = {(k if k.startswith("transformer.") else "transformer." + k): v for k, v in weights.items()
             if not k.endswith(".attn.bias") and not k.endswith(".attn.masked_bias") and k != "lm_head.weight"}
    model.load_state_dict(state, strict=True)
    return model.to(dtype).eval()
