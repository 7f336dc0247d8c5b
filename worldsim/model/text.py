"""Byte-level text encoder (UTF-8 bytes → small transformer → pooled tokens), trained jointly; no download."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .layers import Layer

PAD, BOS = 256, 257


class Pool(nn.Module):
    """Attention pooling with `n` learned queries over the encoded bytes."""

    def __init__(self, width: int, n: int, out: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(n, width) * 0.02)
        self.proj = nn.Linear(width, out)

    def forward(self, h: Tensor, valid: Tensor) -> Tensor:
        """h (B, L, w), valid (B, L) bool → (B, n, out)."""
        scores = torch.einsum("nw,blw->bnl", self.query, h) / h.shape[-1] ** 0.5
        scores = scores.masked_fill(~valid[:, None], float("-inf"))
        return self.proj(torch.einsum("bnl,blw->bnw", scores.softmax(-1), h))


class TextEncoder(nn.Module):
    """Encodes actions to one vector and prompts to P prefix tokens of the deep block's width.

    Learned null embeddings stand for "no action" / "no prompt" (dropped in training for guidance).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c, d = cfg.text, cfg.deep.width
        self.max_bytes = c.max_bytes
        self.embed = nn.Embedding(258, c.width)
        self.pos = nn.Parameter(torch.randn(c.max_bytes + 1, c.width) * 0.02)
        self.layers = nn.ModuleList(Layer(c.width, c.heads) for _ in range(c.layers))
        self.norm = nn.LayerNorm(c.width)
        self.action_pool = Pool(c.width, 1, d)
        self.prompt_pool = Pool(c.width, cfg.deep.prompt_tokens, d)
        self.null_action = nn.Parameter(torch.randn(d) * 0.02)
        self.null_prompt = nn.Parameter(torch.randn(cfg.deep.prompt_tokens, d) * 0.02)

    def tokenize(self, texts: list[str]) -> Tensor:
        """list of B strings → (B, L) byte ids with a leading BOS (empty strings still have one token)."""
        rows = [[BOS, *t.encode("utf-8")[: self.max_bytes]] for t in texts]
        width = max(len(r) for r in rows)
        return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long, device=self.pos.device)

    def _encode(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        ids = self.tokenize(texts)
        valid = ids != PAD
        h = self.embed(ids) + self.pos[: ids.shape[1]]
        mask = valid[:, None, None, :]
        for layer in self.layers:
            h = layer(h, mask=mask)
        return self.norm(h), valid

    def actions(self, texts: list[str]) -> Tensor:
        """B strings → (B, d)."""
        return self.action_pool(*self._encode(texts))[:, 0]

    def prompts(self, texts: list[str]) -> Tensor:
        """B strings → (B, P, d)."""
        return self.prompt_pool(*self._encode(texts))
