"""The deep affine-AR block: causal over the flattened video, conditioned on a prompt and per-step actions.

Sequence layout: [prompt (P)] then, for every frame t, a segment of N+1 slots
    slot 0:   action token  a_{t-1} (frame 0: learned start embedding)         → predicts u_{t,0}
    slot j:   u_{t,j-1} + a_{t-1} embedding (the action reaches every token)   → predicts u_{t,j}
    slot N:   u_{t,N-1} + a_{t-1}                                              → reward / termination heads
Temporal skip prior: μ_{t,i} = u_{t-1,i} + shift_{t,i}, so "nothing moves" is the model at initialisation.
Attention sees the prompt always and frames within a sliding window of W frames (t-W+1 … t).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import ModelConfig
from .cache import PROMPT_FRAME, DeepState, KVCache
from .layers import AffineHead, Layer, Rotary, grid_positions


def band_mask(q_frame: Tensor, q_seq: Tensor, k_frame: Tensor, k_seq: Tensor, window: int) -> Tensor:
    """bool (n, m): key visible to query if it is a prompt key, or causal and within `window` frames."""
    prompt = (k_frame == PROMPT_FRAME)[None, :]
    recent = k_frame[None, :] > (q_frame[:, None] - window)
    causal = k_seq[None, :] <= q_seq[:, None]
    return prompt | (recent & causal)


def band_blocks(mask: Tensor, q_frame: Tensor, chunk: int,
                slots_per_frame: int) -> list[tuple[slice, Tensor, Tensor]] | None:
    """Split attention under a banded mask (n, m) by query frames: each run of `chunk` frames attends only to the
    keys one of its queries may see (the prompt and the frames inside the window), with the mask cut to them.

    Exact, and the cost grows linearly with the number of frames instead of quadratically: a 32-frame clip with
    an 8-frame window computes about half the attention scores. q_frame (n,) must be non-decreasing. None when
    splitting would not skip at least a quarter of the scores (one chunk, or a window as long as the clip); at
    most `chunk` frames of `slots_per_frame` slots (every sampling pass) is decided by the shape alone, without
    reading q_frame back from the device.
    """
    if q_frame.shape[0] <= chunk * slots_per_frame:
        return None
    first, last = int(q_frame[0]), int(q_frame[-1])
    if last - first < chunk:
        return None
    starts = torch.arange(first, last + 1, chunk, device=q_frame.device)
    bounds = [*torch.searchsorted(q_frame, starts).tolist(), q_frame.shape[0]]
    blocks, work = [], 0
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        keys = mask[lo:hi].any(0).nonzero().squeeze(1)
        blocks.append((slice(lo, hi), keys, mask[lo:hi, keys]))
        work += (hi - lo) * keys.numel()
    return blocks if work <= 0.75 * mask.numel() else None


class DeepBlock(nn.Module):
    slot_rc: Tensor  # buffer (N+1, 2): (row, col) of each slot of a frame segment

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, dim = cfg.deep.width, cfg.token_dim
        self.attn_heads, self.head_dim = cfg.deep.heads, d // cfg.deep.heads  # every layer's attention
        self.window = cfg.deep.window
        self.n_tokens = cfg.tokens_per_frame
        self.inp = nn.Linear(dim, d)
        self.act_type = nn.Parameter(torch.randn(d) * 0.02)
        self.start = nn.Parameter(torch.randn(d) * 0.02)
        self.layers = nn.ModuleList(Layer(d, cfg.deep.heads) for _ in range(cfg.deep.layers))
        self.norm = nn.LayerNorm(d)
        self.head = AffineHead(d, dim, cfg.soft_clip)
        self.rotary = Rotary(d // cfg.deep.heads, cfg.rope_base)
        self.reward = nn.Linear(d, 1) if cfg.heads else None
        self.termination = nn.Linear(d, 1) if cfg.heads else None
        for lin in (self.reward, self.termination):
            if lin is not None:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        # (row, col) of each slot's content: slot 0 (action) at (-1, -1), slot j at token j-1.
        slot_rc = torch.cat([torch.full((1, 2), -1.0), grid_positions(*cfg.grid)])
        self.register_buffer("slot_rc", slot_rc, persistent=False)

    def new_state(self, batch: int, frames_hint: int = 1, device: torch.device | str = "cpu") -> DeepState:
        cap = 8 + (self.window + frames_hint) * (self.n_tokens + 1)
        cache = KVCache(len(self.layers), batch, self.attn_heads, self.head_dim, cap, device=device)
        return DeepState(cache)

    # ----- embeddings -------------------------------------------------------------------------------------
    def segment_inputs(self, u: Tensor, act: Tensor) -> Tensor:
        """u (B, T, N, D), act (B, T, d) (already the start embedding at t=0) → slots (B, T, N+1, d)."""
        tok = self.inp(u) + act[:, :, None]
        return torch.cat([(act + self.act_type)[:, :, None], tok], dim=2)

    # ----- the transformer over new slots on top of the cache ----------------------------------------------
    def run(self, state: DeepState, x: Tensor, frame: Tensor, seq: Tensor, pos: Tensor,
            time_keep: Tensor | None = None, commit: bool = False) -> Tensor:
        """x (B, n, d) new slots with their frame/seq indices and (t, row, col) positions → hidden (B, n, d).

        The slots' keys are written into the cache after its committed length; `commit` keeps them.
        """
        cache = state.cache
        cache.reserve(x.shape[1])
        k_frame, k_seq = cache.key_meta(frame, seq)
        band = band_mask(frame, seq, k_frame, k_seq, self.window)
        blocks = band_blocks(band, frame, self.window, self.n_tokens + 1)
        mask = None if blocks is not None or bool(band.all()) else band
        rope = self.rotary.angles(pos)
        for i, layer in enumerate(self.layers):
            x = layer(x, rope=rope, mask=mask, kv=(cache, i), key_time_keep=time_keep, blocks=blocks)
        if commit:
            cache.commit(frame, seq)
        return self.norm(x)

    def add_prompt(self, state: DeepState, prompt: Tensor) -> None:
        """Commit the prompt prefix (B, P, d); its keys carry no time rotation."""
        p = prompt.shape[1]
        dev = prompt.device
        seq = torch.arange(state.cache.total, state.cache.total + p, device=dev)
        zeros = torch.zeros(p, device=dev)
        pos = torch.stack([zeros, torch.arange(p, device=dev).float(), zeros], dim=-1)
        frame = torch.full((p,), PROMPT_FRAME, dtype=torch.long, device=dev)
        self.run(state, prompt, frame, seq, pos, time_keep=zeros, commit=True)

    def slot_meta(self, state: DeepState, frames: int, first_slot: int = 0, n_slots: int | None = None):
        """frame, seq, pos for `frames` consecutive frame segments starting at state.next_frame.

        With frames == 1, `first_slot`/`n_slots` select a sub-range of the segment (Jacobi chunks).
        """
        s = self.n_tokens + 1
        n_slots = s * frames if n_slots is None else n_slots
        idx = torch.arange(first_slot, first_slot + n_slots, device=self.slot_rc.device)
        frame = state.next_frame + idx // s
        seg_start = state.cache.total - (first_slot if frames == 1 else 0)
        seq = seg_start + idx
        rc = self.slot_rc[idx % s]
        pos = torch.cat([frame[:, None].float(), rc], dim=-1)
        return frame, seq, pos

    # ----- data → noise over whole frames -----------------------------------------------------------------
    def forward(self, u: Tensor, act: Tensor, state: DeepState) -> tuple[Tensor, Tensor, Tensor]:
        """u (B, T, N, D) after the local blocks; act (B, T, d) per-frame action embeddings.

        Appends the T frames to `state` (evicting frames that fell out of the window) and returns
        z (B, T, N, D), per-token log-det (B, T, N), end-of-frame hidden state (B, T, d).
        """
        b, t, n, dim = u.shape
        state.cache.evict_frames_before(state.next_frame - self.window + 1)
        frame, seq, pos = self.slot_meta(state, t)
        h = self.run(state, self.segment_inputs(u, act).reshape(b, t * (n + 1), -1), frame, seq, pos, commit=True)
        h = h.view(b, t, n + 1, -1)
        shift, log_sigma = self.head(h[:, :, :n])
        prev = torch.zeros_like(u[:, :1]) if state.prev_u is None else state.prev_u[:, None]
        base = torch.cat([prev, u[:, :-1]], dim=1)
        z = (u.float() - base.float() - shift) * torch.exp(-log_sigma)
        state.prev_u = u[:, -1].detach()
        state.next_frame += t
        return z, -log_sigma.sum(-1), h[:, :, n]

    def frame_params(
        self, state: DeepState, slots: Tensor, first_slot: int, commit: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Parameters for the tokens predicted by slots [first_slot, first_slot+n) of the next frame.

        slots (B, n, d). Returns mean (skip prior included), log σ, both (B, n', D) for the n' slots that
        predict a token (slot N predicts none), and the hidden states (B, n, d).
        """
        n = slots.shape[1]
        frame, seq, pos = self.slot_meta(state, 1, first_slot, n)
        h = self.run(state, slots, frame, seq, pos, commit=commit)
        last = min(first_slot + n, self.n_tokens)
        shift, log_sigma = self.head(h[:, : last - first_slot])
        if state.prev_u is not None:
            shift = shift + state.prev_u[:, first_slot:last].float()
        return shift, log_sigma, h

    def commit_slots(self, state: DeepState, first_slot: int, n: int) -> None:
        """Keep the first n of the slots just run from `first_slot` of the next frame (`frame_params` with
        commit=False wrote their keys past the cache's committed length)."""
        frame, seq, _ = self.slot_meta(state, 1, first_slot, n)
        state.cache.commit(frame, seq)

    def heads(self, h_end: Tensor) -> tuple[Tensor, Tensor]:
        """End-of-frame hidden (..., d) → reward (...), termination probability (...); zeros without heads."""
        if self.reward is None or self.termination is None:
            z = h_end.new_zeros(h_end.shape[:-1])
            return z, z
        return self.reward(h_end).squeeze(-1), torch.sigmoid(self.termination(h_end).squeeze(-1))
