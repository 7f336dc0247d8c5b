"""Optimisation pieces shared by every training loop: AdamW (0.9, 0.95), warm-up + cosine, clipped steps, EMA."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


def adamw(params: Iterable[nn.Parameter], lr: float, weight_decay: float = 1e-4) -> torch.optim.AdamW:
    return torch.optim.AdamW(list(params), lr=lr, betas=(0.9, 0.95), weight_decay=weight_decay)


def lr_at(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warm-up to `base` over `warmup` steps, then cosine decay to 5% of base at `total`."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def clipped_step(opt: torch.optim.Optimizer, loss: Tensor, params: list[nn.Parameter], lr: float,
                 clip: float = 1.0) -> float:
    """Backward, clip the gradient norm, step (skipped when the loss or gradient is not finite). Returns the norm."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
    if math.isfinite(norm) and bool(torch.isfinite(loss)):
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
    return norm


class EMA:
    """Exponential moving average of a module's floating-point state (used for sampling)."""

    def __init__(self, module: nn.Module, decay: float = 0.999) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v, 1 - self.decay)
