"""Causal denoiser: predicts σ·∇ log p(x̃_t | past) from frame t and frame t−1 only (zero lookahead)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .layers import Layer, Rotary, grid_positions


class Denoiser(nn.Module):
    """s_φ(x̃_t, x̃_{t−1}) ≈ σ·∇_{x̃_t} log p(x̃_t | x̃_<t); the denoised frame is x̂_t = x̃_t + σ·s_φ (Tweedie)."""

    pos: Tensor  # buffer (N, 3): (t, row, col) of each token

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, dim = cfg.denoiser, cfg.token_dim
        self.inp = nn.Linear(2 * dim, c.width)
        self.layers = nn.ModuleList(Layer(c.width, c.heads) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.width)
        self.out = nn.Linear(c.width, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.rotary = Rotary(c.width // c.heads, cfg.rope_base)
        rc = grid_positions(*cfg.grid)
        self.register_buffer("pos", torch.cat([torch.zeros(len(rc), 1), rc], dim=-1), persistent=False)

    def forward(self, x: Tensor, prev: Tensor | None) -> Tensor:
        """x (M, N, D) noisy frame tokens, prev (M, N, D) the previous frame's (None at t=0) → (M, N, D)."""
        prev = torch.zeros_like(x) if prev is None else prev
        h = self.inp(torch.cat([x, prev], dim=-1))
        rope = self.rotary.angles(self.pos)
        for layer in self.layers:
            h = layer(h, rope=rope)
        return self.out(self.norm(h))
