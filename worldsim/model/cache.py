"""The deep block's explicit state: a preallocated KV cache with per-key (frame, sequence) metadata.

The session owns it; modules only read and write it when handed one. Keys are stored already rotated, so old
frames can be evicted (sliding time window) without recomputing the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

PROMPT_FRAME = -1  # frame index of prompt tokens: visible from every frame


class KVCache:
    """Per-layer key/value buffers, each (B, heads, capacity, head_dim), and the metadata of each slot.

    Layers have separate tensors so that writing one layer's keys never touches another's (autograd-safe).
    """

    def __init__(self, layers: int, batch: int, heads: int, head_dim: int, capacity: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        shape = (batch, heads, capacity, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(layers)]
        self.frame = torch.full((capacity,), PROMPT_FRAME, dtype=torch.long, device=device)
        self.seq = torch.zeros(capacity, dtype=torch.long, device=device)
        self.length = 0  # committed slots
        self.total = 0  # tokens ever committed (sequence index of the next token)

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    def reserve(self, n: int) -> None:
        """Make room for n more slots past the committed length (grows the buffers by doubling)."""
        need = self.length + n
        if need <= self.capacity:
            return
        cap = max(need, 2 * self.capacity)
        grow = cap - self.capacity
        pad = lambda t: torch.cat([t, t.new_zeros(*t.shape[:2], grow, t.shape[3])], dim=2)
        self.k, self.v = [pad(t) for t in self.k], [pad(t) for t in self.v]
        self.frame = torch.cat([self.frame, self.frame.new_full((grow,), PROMPT_FRAME)])
        self.seq = torch.cat([self.seq, self.seq.new_zeros(grow)])

    def write(self, i: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Put layer i's new keys/values (B, heads, n, head_dim) after the committed length; return all keys and
        values an attention call sees. In place without autograd; out of place when gradients flow."""
        start, n = self.length, k.shape[2]
        if torch.is_grad_enabled() and (k.requires_grad or self.k[i].requires_grad):
            put = lambda buf, new: torch.cat([buf[:, :, :start], new, buf[:, :, start + n :]], dim=2)
            self.k[i], self.v[i] = put(self.k[i], k), put(self.v[i], v)
        else:
            self.k[i][:, :, start : start + n] = k
            self.v[i][:, :, start : start + n] = v
        return self.k[i][:, :, : start + n], self.v[i][:, :, : start + n]

    def key_meta(self, new_frame: Tensor, new_seq: Tensor) -> tuple[Tensor, Tensor]:
        """Frame and sequence index of every key an attention call will see (cached, then new)."""
        n = self.length
        return torch.cat([self.frame[:n], new_frame]), torch.cat([self.seq[:n], new_seq])

    def commit(self, frame: Tensor, seq: Tensor) -> None:
        """Keep the n slots just written (their metadata given) as part of the context."""
        n = frame.shape[0]
        self.frame[self.length : self.length + n] = frame
        self.seq[self.length : self.length + n] = seq
        self.length += n
        self.total += n

    def evict_frames_before(self, frame: int) -> None:
        """Drop every cached key of a frame < `frame` (prompt keys stay); keeps the order of the rest."""
        n = self.length
        keep = (self.frame[:n] == PROMPT_FRAME) | (self.frame[:n] >= frame)
        if bool(keep.all()):
            return
        idx = keep.nonzero().squeeze(1)
        m = idx.numel()
        for buf in (*self.k, *self.v):
            buf[:, :, :m] = buf[:, :, idx]
        self.frame[:m] = self.frame[idx].clone()
        self.seq[:m] = self.seq[idx].clone()
        self.length = m

    def clone(self, index: Tensor | None = None) -> KVCache:
        """An independent copy; with `index`, of those batch rows only (e.g. the conditional half)."""
        take = (lambda t: t.clone()) if index is None else (lambda t: t[index].clone())
        new = KVCache.__new__(KVCache)
        new.k, new.v = [take(t) for t in self.k], [take(t) for t in self.v]
        new.frame, new.seq = self.frame.clone(), self.seq.clone()
        new.length, new.total = self.length, self.total
        return new


@dataclass
class DeepState:
    """Everything the deep block needs to continue a video: cache, previous frame's u (skip prior), time."""

    cache: KVCache
    prev_u: Tensor | None = None  # (B, N, D) u of the last committed frame
    next_frame: int = 0  # index of the next frame to add

    def clone(self) -> DeepState:
        prev = None if self.prev_u is None else self.prev_u.clone()
        return DeepState(self.cache.clone(), prev, self.next_frame)

    def select(self, index: Tensor) -> DeepState:
        """A copy holding only the batch rows `index`."""
        prev = None if self.prev_u is None else self.prev_u[index].clone()
        return DeepState(self.cache.clone(index), prev, self.next_frame)


def cat_rows(tensors: list[Tensor], order: Tensor | None = None) -> Tensor:
    """Concatenate (1, ...) rows on dim 0, optionally in `order`, keeping the rows' memory layout (dim order by
    stride): a float32 sum over a strided dim rounds differently from one over a contiguous dim, and a lone session
    keeps the layout its first frame's codec output gave it (e.g. prev_u with N as the fastest dim)."""
    rows = list(tensors) if order is None else [tensors[int(j)] for j in order]
    strides = rows[0].stride()
    inner = sorted(range(1, rows[0].dim()), key=lambda d: -strides[d])
    perm = [0, *inner]
    return torch.cat([r.permute(perm) for r in rows]).permute([perm.index(d) for d in range(len(perm))])


def stack_states(states: list[DeepState], rows: Tensor) -> DeepState:
    """One DeepState whose batch rows are the given states' rows (concatenated, then reordered by `rows`).
    The states must hold the same cache layout (same frames and sequence positions): ValueError otherwise."""
    c0 = states[0].cache
    n = c0.length
    for st in states[1:]:
        if not (torch.equal(st.cache.frame[:n], c0.frame[:n]) and torch.equal(st.cache.seq[:n], c0.seq[:n])):
            raise ValueError("the states' KV caches hold different layouts; they cannot share a pass")
    cache = KVCache.__new__(KVCache)
    stack = lambda bufs: torch.cat([t[:, :, :n] for t in bufs])[rows]  # noqa: E731
    cache.k = [stack(layer) for layer in zip(*(st.cache.k for st in states), strict=True)]
    cache.v = [stack(layer) for layer in zip(*(st.cache.v for st in states), strict=True)]
    cache.frame, cache.seq = c0.frame[:n].clone(), c0.seq[:n].clone()
    cache.length, cache.total = n, c0.total
    prevs = [st.prev_u for st in states if st.prev_u is not None]
    if prevs and len(prevs) != len(states):
        raise ValueError("some states hold a previous frame and some do not; they cannot share a pass")
    prev = cat_rows([r for p in prevs for r in p.split(1)], rows) if prevs else None
    return DeepState(cache, prev, states[0].next_frame)
