"""What the official ROME/MEMIT code imports but this machine cannot install, and a device shim.

- transformers: the code imports AutoModelForCausalLM and AutoTokenizer for type hints only (the
  model and tokenizer are ours: hf_gpt2.py, gpt2_bpe.py).
- datasets: rome/layer_stats.py imports load_dataset; the key statistics are injected instead
  (get_inv_cov / get_cov are replaced), so calling it is an error.
- matplotlib: rome/compute_v.py imports matplotlib.style.context and never uses it; a stub only
  where python3-matplotlib is absent.
- the device: the code writes .to("cuda") and device="cuda" (torch.tensor, torch.zeros) where the
  reference ran on a GPU. The shim maps "cuda" to "cpu" in those three calls and nothing else, so
  every tensor stays on the CPU in float32 as the code creates it.
Install with install() before importing rome / memit."""
import sys
import types

import torch


def _module(name, **attrs):
    m = types.ModuleType(name)
    m.__dict__.update(attrs)
    sys.modules[name] = m
    return m


def _cpu(device):
    return "cpu" if isinstance(device, str) and device.startswith("cuda") else device


def install():
    class AutoModelForCausalLM:  # type hints only
        pass

    class AutoTokenizer:  # type hints only
        pass

    _module("transformers", AutoModelForCausalLM=AutoModelForCausalLM, AutoTokenizer=AutoTokenizer)

    def load_dataset(*_, **__):
        raise RuntimeError("datasets.load_dataset: the key statistics are injected, nothing is loaded")

    _module("datasets", load_dataset=load_dataset)
    try:
        import matplotlib.style  # noqa: F401
    except ImportError:
        style = _module("matplotlib.style", context=None)
        _module("matplotlib", style=style)

    # device shim: "cuda" -> "cpu" in Tensor.to, torch.tensor(device=), torch.zeros(device=)
    to, tensor, zeros = torch.Tensor.to, torch.tensor, torch.zeros
    torch.Tensor.to = lambda self, *a, **k: to(self, *[_cpu(x) for x in a], **{n: _cpu(v) for n, v in k.items()})
    torch.tensor = lambda *a, device=None, **k: tensor(*a, device=_cpu(device), **k)
    torch.zeros = lambda *a, device=None, **k: zeros(*a, device=_cpu(device), **k)
