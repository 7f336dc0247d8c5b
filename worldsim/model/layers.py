"""Transformer pieces shared by every block: factorised rotary positions, attention with an external cache, MLP."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

if TYPE_CHECKING:
    from .cache import KVCache


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Head dims rotated by (time, row, column); each even, the remainder left unrotated."""
    t = 2 * (head_dim // 8)
    r = 2 * ((head_dim - t) // 4)
    return t, r, r


class Rotary(nn.Module):
    """Rotary embeddings factorised over (time, row, column) positions.

    Positions are float (n, 3); a token can opt out of the time rotation (its time dims are zeroed on keys),
    which makes prompt tokens equally visible from every frame, whatever the absolute time.
    """

    f_t: Tensor  # buffers: rotation frequencies of the time, row and column dims
    f_r: Tensor
    f_c: Tensor

    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        self.split = rope_split(head_dim)
        self.pairs = head_dim // 2
        freqs = [base ** (-torch.arange(0, n, 2).float() / max(n, 1)) for n in self.split]
        for name, f in zip(("f_t", "f_r", "f_c"), freqs, strict=True):
            self.register_buffer(name, f, persistent=False)

    def angles(self, pos: Tensor) -> Tensor:
        """pos (n, 3) → unit phasors (n, head_dim/2) complex64: e^{iθ} for the rotated pairs, 1 for the rest."""
        ang = torch.cat([pos[:, 0:1] * self.f_t, pos[:, 1:2] * self.f_r, pos[:, 2:3] * self.f_c], dim=-1)
        ang = F.pad(ang, (0, self.pairs - ang.shape[-1]))
        return torch.polar(torch.ones_like(ang), ang)

    @staticmethod
    def rotate(x: Tensor, phasor: Tensor) -> Tensor:
        """x (..., dh) real: rotate adjacent pairs (x₀, x₁) as the complex x₀ + i·x₁ times `phasor`, which
        broadcasts against (..., dh/2). One complex multiply instead of slicing, stacking and concatenating; in
        float32 (there is no bfloat16 complex type), as the real products with float32 angles were under autocast."""
        pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
        return torch.view_as_real(pairs * phasor).flatten(-2)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(
        self,
        x: Tensor,
        rope: Tensor | None = None,
        mask: Tensor | None = None,
        kv: tuple[KVCache, int] | None = None,
        key_time_keep: Tensor | None = None,
        blocks: list[tuple[slice, Tensor, Tensor]] | None = None,
    ) -> Tensor:
        """x (B, n, d) → (B, n, d).

        rope: `Rotary.angles` of the n new tokens (n, dh/2). mask: bool (n, m) or (B, 1, n, m), True = may attend,
        over the m keys (cached keys first, then the n new ones). kv: (cache, layer index) — the new keys are written
        into the cache after its committed length and attention runs over all of them. key_time_keep: (n,) 0/1 factor
        on the time-rotated dims of the new keys (0 for prompt tokens). blocks: instead of `mask`, attention split
        into (query rows, the key indices they may see, the mask over those keys), e.g. `deep.band_blocks`.
        """
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, self.head_dim)
        qk = qkv[:, :, :2] if rope is None else Rotary.rotate(qkv[:, :, :2], rope[:, None, None])  # q, k together
        q, k, v = qk[:, :, 0].transpose(1, 2), qk[:, :, 1].transpose(1, 2), qkv[:, :, 2].transpose(1, 2)
        if key_time_keep is not None:
            t = 2 * (self.head_dim // 8)
            k = torch.cat([k[..., :t] * key_time_keep[:, None], k[..., t:]], dim=-1)
        if kv is not None:
            cache, i = kv
            k, v = cache.write(i, k, v)
        if blocks is None:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            y = torch.cat([F.scaled_dot_product_attention(q[:, :, rows], k[:, :, keys], v[:, :, keys], attn_mask=m)
                           for rows, keys, m in blocks], dim=2)
        return self.out(y.transpose(1, 2).reshape(b, n, -1))


class Layer(nn.Module):
    """Pre-norm transformer layer: attention + 4× GELU MLP."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x: Tensor, **attn_kwargs) -> Tensor:
        x = x + self.attn(self.norm1(x), **attn_kwargs)
        return x + self.mlp(self.norm2(x))


class AffineHead(nn.Module):
    """Final norm + zero-initialised linear → bounded (shift, log σ) in float32, so every block starts as identity.

    σ = softplus(raw + 0.5413) (σ = 1 at raw = 0); shift and raw are soft-clipped as a·tanh(·/a).
    """

    SOFTPLUS_ONE = math.log(math.e - 1.0)

    def __init__(self, width: int, dim: int, clip: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, 2 * dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        self.clip = clip

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """h (..., width) → shift (..., dim), log_sigma (..., dim), both float32."""
        raw = self.proj(self.norm(h)).float()
        raw = self.clip * torch.tanh(raw / self.clip)
        shift, s = raw.chunk(2, dim=-1)
        log_sigma = torch.log(F.softplus(s + self.SOFTPLUS_ONE))
        return shift, log_sigma


def causal_mask(n: int, device: torch.device | None = None) -> Tensor:
    """bool (n, n), True on and below the diagonal."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def grid_positions(rows: int, cols: int) -> Tensor:
    """(rows·cols, 2) float (row, col) of a raster-ordered grid."""
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    return torch.stack([r.flatten(), c.flatten()], dim=-1).float()
