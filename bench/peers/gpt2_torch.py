"""GPT-2 small written in plain torch (Debian's python3-transformers does not exist), random
weights, with a KV cache passed explicitly so that the same module exports to ONNX.

Shapes: ids [B, T]; past_k, past_v [L, B, H, P, hd]; returns logits [B, T, V] and the new
present_k, present_v [L, B, H, P + T, hd]. Mirrors Palimpsest's GPT-2 forward (pre-norm blocks,
tanh GELU, tied head, learned positions)."""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F

GPT2_SMALL = dict(layers=12, d=768, heads=12, d_ff=3072, vocab=50257, positions=1024)


class Block(nn.Module):
    def __init__(self, d, heads, d_ff):
        super().__init__()
        self.heads, self.hd = heads, d // heads
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, d_ff), nn.Linear(d_ff, d)

    def forward(self, x, pk, pv):
        B, T, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (t.view(B, T, self.heads, self.hd).transpose(1, 2) for t in (q, k, v))  # [B, H, T, hd]
        k = torch.cat([pk, k], dim=2)
        v = torch.cat([pv, v], dim=2)
        S = k.shape[2]
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)                        # [B, H, T, S]
        # query t sits at absolute position S - T + t and sees keys 0..S-T+t
        qpos = torch.arange(T, device=x.device).unsqueeze(1) + (S - T)
        kpos = torch.arange(S, device=x.device).unsqueeze(0)
        scores = scores.masked_fill(kpos > qpos, float("-inf"))
        att = torch.softmax(scores, dim=-1) @ v                                          # [B, H, T, hd]
        x = x + self.proj(att.transpose(1, 2).reshape(B, T, d))
        x = x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))
        return x, k, v


class Gpt2(nn.Module):
    def __init__(self, layers, d, heads, d_ff, vocab, positions):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(positions, d)
        self.blocks = nn.ModuleList(Block(d, heads, d_ff) for _ in range(layers))
        self.lnf = nn.LayerNorm(d, eps=1e-5)
        self.heads, self.hd, self.layers = heads, d // heads, layers

    def empty_past(self, batch=1):
        z = torch.zeros(self.layers, batch, self.heads, 0, self.hd)
        return z, z.clone()

    def forward(self, ids, past_k, past_v):
        B, T = ids.shape
        P = past_k.shape[3]
        pos = torch.arange(P, P + T, device=ids.device).unsqueeze(0)
        x = self.wte(ids) + self.wpe(pos)
        ks, vs = [], []
        for l, blk in enumerate(self.blocks):
            x, k, v = blk(x, past_k[l], past_v[l])
            ks.append(k); vs.append(v)
        logits = self.lnf(x) @ self.wte.weight.t()                                        # tied head
        return logits, torch.stack(ks), torch.stack(vs)


def make_gpt2_small(seed=0):
    torch.manual_seed(seed)
    m = Gpt2(**GPT2_SMALL)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.02) if p.dim() > 1 else p.normal_(0, 0.1)
    return m.eval()
