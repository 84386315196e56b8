"""GPT-2's byte-level BPE as an object with the calls the official ROME/MEMIT code makes of a
transformers tokenizer (transformers is not installable here):
  tok(str | list[str], padding=..., return_tensors="pt"|None) -> an Encoding: ["input_ids"],
      ["attention_mask"], .to(device), and, sliced, each string's token list (as a fast tokenizer's
      BatchEncoding slices to its Encodings; rome/repr_tools.get_words_idxs_in_templates takes
      len() of them)
  tok.decode(ids), tok.padding_side ("right", GPT-2's default), tok.pad_token_id (EOS, as the
      reference's experiments set it).
The vocabulary comes from the engine (byte strings and their ranks, tiktoken's file format), and
merging by lowest rank of the merged bytes is GPT-2's merge order. Every string encoded is recorded
in `log`, so the engine can check it gives the same ids."""
import base64

import regex
import torch

# GPT-2's pre-tokenizer: contractions, letters, digits, other symbols, whitespace runs
_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
EOS = "<|endoftext|>"


class Encoding(dict):
    """input_ids / attention_mask as lists (or tensors with return_tensors="pt")."""

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return dict.__getitem__(self, "input_ids")[key]
        return dict.__getitem__(self, key)

    def to(self, _device):
        return self  # the device shim keeps everything on the CPU


class Gpt2Bpe:
    def __init__(self, ranks_path, eos_id=50256, clean_up_tokenization_spaces=True):
        self.ranks = {}
        with open(ranks_path) as f:
            for line in f:
                if line.strip():
                    b64, rank = line.split()
                    self.ranks[base64.b64decode(b64)] = int(rank)
        self.bytes_of = {r: b for b, r in self.ranks.items()}
        self.eos_token_id = self.pad_token_id = eos_id
        self.eos_token = self.pad_token = EOS
        self.bytes_of[eos_id] = EOS.encode()
        self.padding_side = "right"
        # transformers' default when the reference was written (the GPT-2 tokenizer config does not set it)
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.log = {}
        self._cache = {}

    def _bpe(self, piece):
        if piece in self._cache:
            return self._cache[piece]
        parts = [bytes([b]) for b in piece]
        while len(parts) > 1:
            best, at = None, -1
            for i in range(len(parts) - 1):
                r = self.ranks.get(parts[i] + parts[i + 1])
                if r is not None and (best is None or r < best):
                    best, at = r, i
            if best is None:
                break
            parts[at:at + 2] = [parts[at] + parts[at + 1]]
        ids = [self.ranks[p] for p in parts]
        self._cache[piece] = ids
        return ids

    def encode(self, text):
        ids = []
        for i, chunk in enumerate(text.split(EOS)):
            if i > 0:
                ids.append(self.eos_token_id)
            for piece in _PATTERN.findall(chunk):
                ids.extend(self._bpe(piece.encode("utf-8")))
        self.log[text] = ids
        return ids

    def __call__(self, text, padding=False, return_tensors=None, **_):
        single = isinstance(text, str)
        rows = [self.encode(t) for t in ([text] if single else text)]
        masks = [[1] * len(r) for r in rows]
        if padding or return_tensors == "pt":
            width = max(len(r) for r in rows)
            pad = [width - len(r) for r in rows]
            if self.padding_side == "right":
                rows = [r + [self.pad_token_id] * p for r, p in zip(rows, pad)]
                masks = [m + [0] * p for m, p in zip(masks, pad)]
            else:
                rows = [[self.pad_token_id] * p + r for r, p in zip(rows, pad)]
                masks = [[0] * p + m for m, p in zip(masks, pad)]
        if return_tensors == "pt":
            return Encoding(input_ids=torch.tensor(rows), attention_mask=torch.tensor(masks))
        if single:
            return Encoding(input_ids=rows[0], attention_mask=masks[0])
        return Encoding(input_ids=rows, attention_mask=masks)

    def decode(self, ids, **_):
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        elif isinstance(ids, int):
            ids = [ids]
        text = b"".join(self.bytes_of[i] for i in ids).decode("utf-8", errors="replace")
        if self.clean_up_tokenization_spaces:
            for a, b in [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                         (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]:
                text = text.replace(a, b)
        return text
