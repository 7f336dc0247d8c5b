"""Shallow affine-AR blocks over the N tokens of one frame (shared across frames, unconditional)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .layers import AffineHead, Layer, Rotary, causal_mask, grid_positions


class LocalBlock(nn.Module):
    """z_i = (x_i − μ_i(x_<i)) / σ_i(x_<i) in raster order, or reversed raster when `reverse`."""

    order: Tensor  # buffers: (N,) token order, (N, 3) slot positions, (N, N) causal mask
    pos: Tensor
    mask: Tensor

    def __init__(self, cfg: ModelConfig, reverse: bool) -> None:
        super().__init__()
        c, dim, n = cfg.local, cfg.token_dim, cfg.tokens_per_frame
        self.reverse = reverse
        self.inp = nn.Linear(dim, c.width)
        self.sos = nn.Parameter(torch.randn(c.width) * 0.02)
        self.layers = nn.ModuleList(Layer(c.width, c.heads) for _ in range(c.layers))
        self.head = AffineHead(c.width, dim, cfg.soft_clip)
        self.rotary = Rotary(c.width // c.heads, cfg.rope_base)
        order = torch.arange(n).flip(0) if reverse else torch.arange(n)
        rc = grid_positions(*cfg.grid)[order]
        # slot 0 (start) at (-1, -1); slot i holds token order[i-1]; time is unused within a frame.
        pos = torch.cat([torch.full((1, 2), -1.0), rc[:-1]])
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("pos", torch.cat([torch.zeros(n, 1), pos], dim=-1), persistent=False)
        self.register_buffer("mask", causal_mask(n), persistent=False)

    def to_order(self, x: Tensor) -> Tensor:
        return x.flip(-2) if self.reverse else x

    def params(self, xo: Tensor) -> tuple[Tensor, Tensor]:
        """xo (M, N, D) in block order → shift, log σ (M, N, D) for each token, from the tokens before it."""
        h = torch.cat([self.sos.expand(xo.shape[0], 1, -1), self.inp(xo[:, :-1])], dim=1)
        rope = self.rotary.angles(self.pos)
        for layer in self.layers:
            h = layer(h, rope=rope, mask=self.mask)
        return self.head(h)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (M, N, D) → z (M, N, D), per-token log-det (M, N)."""
        xo = self.to_order(x)
        shift, log_sigma = self.params(xo)
        z = (xo.float() - shift) * torch.exp(-log_sigma)
        return self.to_order(z), self.to_order(-log_sigma.sum(-1, keepdim=True)).squeeze(-1)

    def inverse(self, z: Tensor, init: Tensor | None = None, tol: float = 1e-4, max_iter: int | None = None,
                sequential: bool = False, per_row: bool = False, switch_tol: float | None = None) -> Tensor:
        """z (M, N, D) → x (M, N, D), the inverse of `forward`: token by token (`sequential`, exact), or by Jacobi
        fixed-point passes x ← shift(x) + σ(x)·z from `init` (default z) until max |Δ| < tol or `max_iter` (default
        N, where Jacobi is exact). per_row: the stopping rule applies to each row on its own (a converged row is
        frozen while the others iterate), so every row gets what it would get alone. switch_tol: Jacobi passes run
        in bfloat16 (autocast) until the largest update is below it, then in float32 to `tol`."""
        zo = self.to_order(z)
        xo = self.to_order(init).clone() if init is not None else zo.clone()
        n = zo.shape[1]
        if sequential:
            for i in range(n):
                shift, ls = self.params(xo)
                xo[:, i] = shift[:, i] + torch.exp(ls[:, i]) * zo[:, i]
            return self.to_order(xo)
        if switch_tol is not None:
            for _ in range(max_iter or n):
                with torch.autocast(zo.device.type, dtype=torch.bfloat16):
                    shift, ls = self.params(xo)
                new = shift.float() + torch.exp(ls.float()) * zo
                delta = float((new - xo).abs().max())
                xo = new
                if not delta >= switch_tol:
                    break
        active = torch.ones(zo.shape[0], dtype=torch.bool, device=zo.device)
        for _ in range(max_iter or n):
            shift, ls = self.params(xo)
            new = shift + torch.exp(ls) * zo
            moved = ~((new - xo).abs().flatten(1).amax(1) < tol)  # NaN counts as moved
            now = active & moved if per_row else active & bool(moved.any())
            if per_row:
                new[~active] = xo[~active]  # frozen rows keep their values; xo takes new's layout, as alone
            xo, active = new, now
            if not bool(active.any()):
                break
        return self.to_order(xo)


class ChannelMix(nn.Module):
    """Learned invertible D×D mix of each token (LU parametrised): y = x Wᵀ, log|det| = N·Σ log|s|."""

    perm: Tensor  # buffers: (D, D) permutation, (D,) signs of the diagonal, (D, D) identity
    sign: Tensor
    eye: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        w = torch.linalg.qr(torch.randn(dim, dim))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign", torch.sign(s))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))
        self.register_buffer("eye", torch.eye(dim), persistent=False)

    def weight(self) -> Tensor:
        lower = torch.tril(self.lower, -1) + self.eye
        upper = torch.triu(self.upper, 1) + torch.diag(self.sign * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (..., N, D) → y (..., N, D), per-token log-det (..., N) (the constant Σ log|s|)."""
        return x @ self.weight().T, self.log_s.sum().expand(x.shape[:-1])

    def inverse(self, y: Tensor) -> Tensor:
        return y @ torch.linalg.inv(self.weight()).T
