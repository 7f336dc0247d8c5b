"""FLOPs of a model call counted by hand: linear layers, attention and convolutions, from the shapes they run on."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from .model.layers import Attention


def linear_flops(x: Tensor, layer: nn.Linear) -> int:
    """2·rows·in·out multiply-adds of y = x Wᵀ + b."""
    return 2 * (x.numel() // layer.in_features) * layer.in_features * layer.out_features


def attention_flops(x: Tensor, keys: int) -> int:
    """QKᵀ and AV: 2·2·B·n·keys·width for n queries (B, n, width) over `keys` keys (masked ones included: the
    kernel computes them)."""
    b, n, width = x.shape
    return 4 * b * n * keys * width


def conv_flops(out: Tensor, layer: nn.Conv2d) -> int:
    """2·(output elements)·(Cin/groups)·kh·kw."""
    kh, kw = layer.kernel_size
    return 2 * out.numel() * (layer.in_channels // layer.groups) * kh * kw


class FlopCounter:
    """Counts the FLOPs of everything a module runs while the counter is entered (forward hooks; no timing
    changes beyond a few microseconds per layer call). Elementwise work (norms, activations, softmax) is not counted.

    Attention over a KV cache counts the cached keys plus the new ones (the cache's length before the call's commit).
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.flops = 0
        self._handles: list[Any] = []

    def _hook(self, layer: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
        x = args[0]
        if isinstance(layer, nn.Linear):
            self.flops += linear_flops(x, layer)
        elif isinstance(layer, nn.Conv2d):
            self.flops += conv_flops(out, layer)
        else:
            kv = kwargs.get("kv")
            keys = x.shape[1] + (kv[0].length if kv is not None else 0)
            self.flops += attention_flops(x, keys)

    def __enter__(self) -> FlopCounter:
        for m in self.module.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, Attention)):
                self._handles.append(m.register_forward_hook(self._hook, with_kwargs=True))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def pop(self) -> int:
        """FLOPs counted so far; resets the count."""
        out, self.flops = self.flops, 0
        return out
