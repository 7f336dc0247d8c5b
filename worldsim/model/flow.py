"""The whole network: codec, shallow per-frame blocks, the deep causal block, text encoder, denoiser.

Data → noise: frames → codec tokens x → (channel mix) → local blocks → u → deep block → z ~ N(0, I).
log p(x_t | x_<t, a_<t, prompt) = log N(z_t; 0, I) + deep log-det_t + local log-det_t (+ mix log-det).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .cache import DeepState
from .codec import make_codec
from .deep import DeepBlock
from .denoiser import Denoiser
from .local import ChannelMix, LocalBlock
from .text import TextEncoder
from .vector_actions import VectorActionEncoder

LOG_2PI = math.log(2 * math.pi)
LN2 = math.log(2.0)  # nats → bits


@dataclass
class FlowOut:
    log_prob: Tensor  # (B, T) nats, log p(x_t | past) of each frame's tokens
    z: Tensor  # (B, T, N, D)
    token_log_prob: Tensor  # (B, T, N) per-token terms of the exact likelihood (they sum to log_prob)
    h_end: Tensor  # (B, T, d) deep state at the end of each frame (reward/termination heads)
    u: Tensor  # (B, T, N, D) the local blocks' output (the deep block's input)


class FlowNet(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.codec = make_codec(cfg)
        self.mix = ChannelMix(cfg.token_dim) if cfg.codec.kind == "pixels" and cfg.codec.channel_mix else None
        self.local = nn.ModuleList(LocalBlock(cfg, reverse=k % 2 == 1) for k in range(cfg.local.blocks))
        self.deep = DeepBlock(cfg)
        self.text = TextEncoder(cfg)  # prompts, and actions of a text-action model
        self.vector_actions = VectorActionEncoder(cfg) if cfg.action_spec.is_vector else None
        self.denoiser = Denoiser(cfg) if cfg.denoiser.enabled else None

    @property
    def device(self) -> torch.device:
        return self.deep.start.device

    def noise(self, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
        """Standard normal noise from a CPU generator (reproducible on every device), on the model's device."""
        return torch.randn(shape, generator=gen).to(self.device)

    @property
    def dims_per_frame(self) -> int:
        return self.cfg.tokens_per_frame * self.cfg.token_dim

    # ----- frames ↔ tokens ----------------------------------------------------------------------------------
    def encode_frames(self, frames: Tensor) -> Tensor:
        """uint8 (B, T, H, W, 3) → codec tokens (B, T, N, D) float32."""
        x = frames.to(self.device).permute(0, 1, 4, 2, 3).float() / 127.5 - 1.0
        return self.codec.encode(x)

    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """codec tokens (B, T, N, D) → uint8 (B, T, H, W, 3)."""
        x = self.codec.decode(tokens).clamp(-1, 1)
        return ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 1, 3, 4, 2)

    # ----- conditioning -------------------------------------------------------------------------------------
    @property
    def null_action(self) -> Tensor:
        """(d,) the learned "no action" embedding (guidance's unconditional branch)."""
        return self.text.null_action if self.vector_actions is None else self.vector_actions.null_action

    def action_embeddings(self, actions: list[list[Any]]) -> Tensor:
        """B lists of T actions (None = no action) → (B, T, d).

        Text: each distinct phrase is encoded once, on its own, so its embedding never depends on the others.
        Vector: each action is a float array (dim,) in the spec's box (validated by the caller), normalised here.
        """
        null = self.null_action
        if self.vector_actions is not None:
            return self._vector_embeddings(self.vector_actions, actions, null)
        unique = sorted({a for row in actions for a in row if a is not None})
        table = {a: self.text.actions([a])[0] for a in unique}
        rows = [torch.stack([table[a] if a is not None else null for a in row])
                if row else null.new_zeros(0, null.shape[0]) for row in actions]
        return torch.stack(rows)

    def _vector_embeddings(self, encoder: VectorActionEncoder, actions: list[list[Any]], null: Tensor) -> Tensor:
        spec, dim = self.cfg.action_spec, self.cfg.action_spec.dim
        b, t = len(actions), max((len(row) for row in actions), default=0)
        if any(len(row) != t for row in actions):
            raise ValueError("every row of vector actions needs the same length")
        values = np.zeros((b, t, dim), np.float32)
        given = np.zeros((b, t), bool)
        for i, row in enumerate(actions):
            for j, a in enumerate(row):
                if a is not None:
                    values[i, j], given[i, j] = a, True
        out = null.expand(b, t, null.shape[0]).clone()
        if given.any():
            unit = torch.from_numpy(spec.normalise(values[given])).to(null.device)
            out[torch.from_numpy(given).to(null.device)] = encoder(unit)
        return out

    def prompt_embeddings(self, prompts: list[str | None]) -> Tensor:
        """B prompts (None = no prompt) → (B, P, d)."""
        table = {p: self.text.prompts([p])[0] for p in sorted({p for p in prompts if p is not None})}
        return torch.stack([table[p] if p is not None else self.text.null_prompt for p in prompts])

    def frame_conditions(self, act: Tensor | None, batch: int, frames: int, first_frame: int) -> Tensor:
        """Action embedding entering each of `frames` frames (B, T, d): the action before it, or the learned
        start embedding for frame 0. act (B, T', d) holds the actions before the frames that have one."""
        d = self.deep.start.shape[0]
        out = self.deep.start.expand(batch, frames, d).clone()
        k = 1 if first_frame == 0 else 0
        if frames > k:
            if act is None or act.shape[1] != frames - k:
                got = None if act is None else act.shape[1]
                raise ValueError(f"expected {frames - k} action embeddings, got {got}")
            out[:, k:] = act
        return out

    def new_state(self, prompt: Tensor, frames_hint: int = 1) -> DeepState:
        """A fresh deep state holding the prompt prefix (B, P, d)."""
        state = self.deep.new_state(prompt.shape[0], frames_hint, device=prompt.device)
        self.deep.add_prompt(state, prompt)
        return state

    # ----- data → noise ------------------------------------------------------------------------------------
    def local_forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, T, N, D) codec tokens → u (B, T, N, D), per-token log-det (B, T, N) (mix included)."""
        b, t, n, dim = x.shape
        h, logdet = x.reshape(b * t, n, dim).float(), x.new_zeros(b * t, n)
        if self.mix is not None:
            h, ld = self.mix(h)
            logdet = logdet + ld
        for block in self.local:
            h, ld = block(h)
            logdet = logdet + ld
        return h.view(b, t, n, dim), logdet.view(b, t, n)

    def forward(self, x: Tensor, cond: Tensor, state: DeepState) -> FlowOut:
        """x (B, T, N, D) noisy codec tokens of T frames continuing `state`; cond (B, T, d) from
        `frame_conditions`. Appends the frames to `state` and returns their exact log-likelihoods."""
        u, ld_local = self.local_forward(x)
        z, ld_deep, h_end = self.deep(u, cond, state)
        token_lp = -0.5 * (z.pow(2) + LOG_2PI).sum(-1) + ld_deep + ld_local
        return FlowOut(token_lp.sum(-1), z, token_lp, h_end, u)
