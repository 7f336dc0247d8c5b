"""Dynamic batching: step several independent batch-1 `Session`s of one model in one batched forward pass.

`step_together(sessions, actions)` gives every session exactly the frame, log-likelihood and state it would get
from `session.step(action)` alone: noise comes from each session's own generator, and the Jacobi fixed-point
iterations stop per session (a converged row is frozen while the others iterate), so batching changes no result.
One exception: small Jacobi chunks capped by `max_iter` can differ in the last float bits on some CPUs, whose
kernels for small matrix products depend on the batch size (tests/test_bridge_batching.py).
Sessions can share a pass when `batch_key` says so: same settings and the same KV-cache layout (same number of
frames so far). Everything else — the stacked KV cache, the per-row stopping rule — lives only for that pass.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch
from torch import Tensor

from worldsim.denoise import denoise
from worldsim.model.cache import DeepState, KVCache
from worldsim.model.flow import LN2, LOG_2PI, FlowNet
from worldsim.model.local import LocalBlock
from worldsim.sampling import FrameSample, SamplerSettings, _affine, _dup, commit_chunk
from worldsim.session import Session, StepResult


def batch_key(session: Session) -> Hashable | None:
    """Sessions with equal keys can be stepped in one pass; None: this one cannot (closed, not reset, batched,
    a per-session reward function, the sequential sampler, whose one-token passes round differently in a batch,
    `freeze_prefix`, whose per-session commits a batched pass does not reproduce bit for bit, or best_of > 1)."""
    st = session.state
    if (session.closed or st is None or session.batch_size != 1 or session.reward_fn is not None
            or session.sampling.method != "jacobi" or session.sampling.freeze_prefix or session.best_of != 1):
        return None
    c = st.cache
    return (id(session.net), session.sampling, session.denoise_mode, session.context, session.guided,
            session._levels is None, session._x_prev is None, st.next_frame, c.length, c.total)


def step_together(sessions: Sequence[Session], actions: Sequence[str]) -> list[StepResult]:
    """Step each `sessions[i]` with `actions[i]` in one batched pass; results equal `sessions[i].step(actions[i])`.

    All sessions must have the same `batch_key` (ValueError otherwise). Actions are checked per session first
    (InvalidAction), before any session changes.
    """
    if not sessions or len(sessions) != len(actions):
        raise ValueError(f"need one action per session; received {len(sessions)} sessions, {len(actions)} actions")
    keys = {batch_key(s) for s in sessions}
    if len(keys) != 1 or None in keys:
        raise ValueError("step_together needs reset batch-1 sessions with one batch_key; group them by batch_key")
    acts = [s._actions(a)[0] for s, a in zip(sessions, actions, strict=True)]
    with torch.no_grad():
        return _step(list(sessions), acts)


def _step(sessions: list[Session], acts: list[str]) -> list[StepResult]:
    first, b = sessions[0], len(sessions)
    net, s, cfg = first.net, first.sampling, first.cfg
    rows = _rows(b, first.guided)
    # Draw in the order a lone step would: the sampling noise first (context="frame" draws again in _observe).
    z = torch.cat([s.temperature * net.noise((1, cfg.tokens_per_frame, cfg.token_dim), x.generator) for x in sessions])
    cond = torch.cat([x._cond([a]) for x, a in zip(sessions, acts, strict=True)])[rows]
    state = _stack_states([x.state for x in sessions], rows)
    levels = None if first._levels is None else [_cat(t) for t in zip(*(x._levels for x in sessions), strict=True)]
    x_prev = None if first._x_prev is None else _cat([x._x_prev for x in sessions])
    sample, levels, iters = _sample_rows(net, state, cond, z, s, levels)
    if first.denoise_mode == "tweedie":  # autograd through the flow, per session on its own (unchanged) state
        x_hat = torch.cat([denoise(net, sample.x[i : i + 1], None, x.state, cond[i : i + 1], "tweedie")
                           for i, x in enumerate(sessions)])
    else:
        x_hat = denoise(net, sample.x, x_prev, None, None, first.denoise_mode)
    # Decoded one by one: the codec's convolutions round differently for a batch of frames than for one.
    frames = np.concatenate([net.decode_tokens(x_hat[i : i + 1, None])[:, 0].cpu().numpy() for i in range(b)])
    # Row by row: a (1, d) → (1, 1) head takes another float path than the (B, d) one (last-bit differences).
    heads = [net.deep.heads(h[None]) for h in sample.h_end]
    reward, term = (torch.cat(t).cpu().numpy() for t in zip(*heads, strict=True))
    lp = sample.log_prob.cpu().numpy()
    bpd = -lp / (net.dims_per_frame * LN2)
    out = []
    for i, x in enumerate(sessions):
        mine = slice(i, i + 1)
        if x.context == "sample":
            own = [i, i + b] if x.guided else [i]
            x.state = state.select(torch.tensor(own, device=net.device))
            x.state.prev_u = _cat([state.prev_u[j : j + 1] for j in own])  # keeps the memory layout
            x._x_prev = sample.x[mine].clone()
            x.frames.append(frames[mine].copy())
            x.actions.append([acts[i]])
        else:  # re-anchor on the shown frame, as Session._generate does (its own state never saw the sample)
            x._observe(frames[mine], [acts[i]], first=False)
        x._levels = [t[mine].clone() for t in levels]
        out.append(StepResult(frames[i], float(lp[i]), float(bpd[i]), float(reward[i]), bool(term[i] > 0.5),
                              {"iterations": int(iters[i]), "likelihood_space": cfg.likelihood_space}))
    return out


def _rows(b: int, guided: bool) -> Tensor:
    """Order of the stacked rows: session-major [c0, u0, c1, u1, …] → [c0, c1, …, u0, u1, …] when guided."""
    if not guided:
        return torch.arange(b)
    return torch.arange(2 * b).view(b, 2).T.reshape(-1)


def _cat(tensors: Sequence[Tensor], order: Tensor | None = None) -> Tensor:
    """Concatenate (1, ...) rows on dim 0, optionally in `order`, keeping the rows' memory layout (dim order by
    stride): a float32 sum over a strided dim rounds differently from one over a contiguous dim, and a lone session
    keeps the layout its first frame's codec output gave it (e.g. prev_u with N as the fastest dim)."""
    rows = list(tensors) if order is None else [tensors[int(j)] for j in order]
    inner = sorted(range(1, rows[0].dim()), key=lambda d: -rows[0].stride(d))
    perm = [0, *inner]
    return torch.cat([r.permute(perm) for r in rows]).permute([perm.index(d) for d in range(len(perm))])


def _stack_states(states: list[DeepState], rows: Tensor) -> DeepState:
    """One DeepState whose batch rows are the given states' rows (concatenated, then reordered by `rows`)."""
    c0 = states[0].cache
    n = c0.length
    for st in states[1:]:
        if not (torch.equal(st.cache.frame[:n], c0.frame[:n]) and torch.equal(st.cache.seq[:n], c0.seq[:n])):
            raise ValueError("the sessions' KV caches hold different layouts; they cannot share a pass")
    cache = KVCache.__new__(KVCache)
    stack = lambda bufs: torch.cat([t[:, :, :n] for t in bufs])[rows]
    cache.k = [stack(layer) for layer in zip(*(st.cache.k for st in states), strict=True)]
    cache.v = [stack(layer) for layer in zip(*(st.cache.v for st in states), strict=True)]
    cache.frame, cache.seq = c0.frame[:n].clone(), c0.seq[:n].clone()
    cache.length, cache.total = n, c0.total
    prev = None if states[0].prev_u is None else _cat([r for st in states for r in st.prev_u.split(1)], rows)
    return DeepState(cache, prev, states[0].next_frame)


# ----- sampling with a per-row stopping rule ----------------------------------------------------------------------
def _sample_rows(net: FlowNet, state: DeepState, cond: Tensor, z: Tensor, s: SamplerSettings,
                 local_init: list[Tensor] | None = None) -> tuple[FrameSample, list[Tensor], Tensor]:
    """`sampling.sample_frame` (Jacobi) for B independent rows: the iterations stop per row, as each row would
    alone. Returns the sample, the local-block levels and the iterations of each row (B,) (deep block, all chunks).
    """
    u, mean, logs, h_end, iters = _invert_deep_rows(net, state, cond, z, s)
    levels: list[Tensor] = []
    h = u
    for k in reversed(range(len(net.local))):
        h = _invert_block_rows(net.local[k], h, s, None if local_init is None else local_init[k])
        levels.insert(0, h)
    x = net.mix.inverse(h) if net.mix is not None else h
    _, ld_local = net.local_forward(x[:, None])
    tok = torch.cat([_token_log_prob(*r) for r in zip(u, mean, logs, ld_local[:, 0], strict=True)])
    return FrameSample(u, x, tok.sum(-1), tok, h_end, int(iters.max())), levels, iters


def _token_log_prob(u: Tensor, mean: Tensor, logs: Tensor, ld_local: Tensor) -> Tensor:
    """(1, N) per-token log p of one row, as `sample_frame` computes it: row by row, because a float32 sum over
    the last dim of a (B, N, D) tensor can round differently from the same sum over a (1, N, D) one."""
    z_c = (u[None] - mean[None]) * torch.exp(-logs[None])
    return -0.5 * (z_c.pow(2) + LOG_2PI).sum(-1) - logs[None].sum(-1) + ld_local[None]


def _still_active(cur: Tensor, new: Tensor, active: Tensor, tol: float) -> Tensor:
    """Rows that keep iterating after this update: active ones whose max |Δ| is not below tol (NaN keeps going,
    as `delta < tol` does for a lone session)."""
    return active & ~((new - cur).abs().flatten(1).amax(1) < tol)


def _invert_deep_rows(net: FlowNet, state: DeepState, cond: Tensor, z: Tensor, s: SamplerSettings):
    """`sampling.invert_deep` (Jacobi) with the stopping rule applied per row."""
    deep, b, b2 = net.deep, z.shape[0], cond.shape[0]
    n = deep.n_tokens
    state.cache.evict_frames_before(state.next_frame - deep.window + 1)
    u = state.prev_u[:b].clone() if state.prev_u is not None else torch.zeros_like(z)
    mean, logs = torch.empty_like(z), torch.empty_like(z)
    slots = lambda a, e: deep.segment_inputs(_dup(u, b2)[:, None], cond[:, None])[:, 0, a:e]
    iters = torch.zeros(b, dtype=torch.long)
    chunk = s.chunk or n
    for a in range(0, n, chunk):
        e = min(a + chunk, n)
        active = torch.ones(b, dtype=torch.bool, device=z.device)
        for _ in range(s.max_iter or (e - a)):
            new = _affine(deep.frame_params(state, slots(a, e), a, commit=False), z[:, a:e], s.guidance, b)[0]
            iters += active.cpu()
            now = _still_active(u[:, a:e], new, active, s.tol)
            u[active, a:e] = new[active]  # in place, as invert_deep does (u keeps its memory layout)
            active = now
            if not bool(active.any()):
                break
        h = commit_chunk(deep, state, slots, a, e, mean, logs)
    state.prev_u = _dup(u, b2)
    state.next_frame += 1
    return u, mean, logs, h[:b, -1], iters


def _invert_block_rows(block: LocalBlock, h: Tensor, s: SamplerSettings, init: Tensor | None) -> Tensor:
    """`sampling.invert_block` (Jacobi) with the stopping rule applied per row."""
    zo = block.to_order(h)
    xo = block.to_order(init).clone() if init is not None else zo.clone()
    active = torch.ones(h.shape[0], dtype=torch.bool, device=h.device)
    for _ in range(s.max_iter or zo.shape[1]):
        shift, ls = block.params(xo)
        new = shift + torch.exp(ls) * zo
        now = _still_active(xo, new, active, s.tol)
        new[~active] = xo[~active]  # frozen rows keep their values; the tensor takes new's layout, as alone
        xo, active = new, now
        if not bool(active.any()):
            break
    return block.to_order(xo)

