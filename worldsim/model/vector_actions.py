"""Vector actions → one embedding of the deep block's width: Fourier features of the normalised vector, then an MLP."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..config import ModelConfig

FREQUENCIES = 6  # octaves of sin/cos features per component: resolves steps down to ~1/64 of the box


class VectorActionEncoder(nn.Module):
    """a (B, d) in [-1, 1] (normalised by the action spec's box) → (B, width).

    Features [a, sin(2^k π a), cos(2^k π a)] for k < FREQUENCIES let a small MLP tell close actions apart; the
    learned null embedding stands for "no action" (dropped in training, so classifier-free guidance works).
    """

    freqs: Tensor  # buffer (FREQUENCIES,): 2^k π

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d_in, width = cfg.action_spec.dim, cfg.deep.width
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(FREQUENCIES, dtype=torch.float32),
                             persistent=False)
        features = d_in * (1 + 2 * FREQUENCIES)
        self.mlp = nn.Sequential(nn.Linear(features, width), nn.SiLU(), nn.Linear(width, width))
        self.null_action = nn.Parameter(torch.randn(width) * 0.02)

    def forward(self, a: Tensor) -> Tensor:
        """a (B, d) normalised → (B, width)."""
        angles = a[..., None] * self.freqs  # (B, d, F)
        feats = torch.cat([a[..., None], angles.sin(), angles.cos()], dim=-1).flatten(-2)
        return self.mlp(feats)
