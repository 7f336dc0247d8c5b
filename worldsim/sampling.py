"""Noise → data: exact sequential inversion (the reference) and Jacobi fixed-point inversion with a KV cache.

Per new frame: invert the deep block (token by token, or Jacobi over whole frames / chunks warm-started from the
previous frame), then the local blocks (per frame), giving the noisy tokens x̃_t that enter the context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

import torch
from torch import Tensor

from .model.cache import DeepState
from .model.deep import DeepBlock
from .model.flow import LOG_2PI, FlowNet
from .model.local import LocalBlock
from .precision import compute

Method = Literal["jacobi", "sequential"]


@dataclass(frozen=True)
class SamplerSettings:
    method: Method = "jacobi"
    tol: float = 1e-4  # Jacobi stops when max |Δx| over a chunk falls below this
    max_iter: int | None = None  # cap on Jacobi iterations per chunk (None: chunk length, which is exact)
    chunk: int | None = None  # deep-block Jacobi chunk in tokens (None: the whole frame)
    guidance: float = 0.0  # classifier-free guidance weight w (STARFlow's Gaussian rule); 0 = conditional
    temperature: float = 1.0
    # Jacobi: after each pass commit the chunk's converged prefix and iterate only on the rest; the last pass's keys
    # are kept (no separate commit pass). Not the default: sessions stepped together (`step_sessions`) reproduce
    # the whole-chunk policy row by row and bit for bit, not this one.
    freeze_prefix: bool = False
    # bfloat16 Jacobi passes (autocast) while the largest update is above `switch_tol` (bf16's own noise is a few
    # 1e-3 here), then float32 passes to `tol`: the fixed point, the cache and the likelihood are float32's.
    low_precision: bool = False
    switch_tol: float = 1e-2


@dataclass
class FrameSample:
    u: Tensor  # (B, N, D) deep-block value of the new frame (enters the cache)
    x: Tensor  # (B, N, D) noisy codec tokens x̃_t
    log_prob: Tensor  # (B,) exact log p(x̃_t | past), conditional model
    token_log_prob: Tensor  # (B, N)
    h_end: Tensor  # (B, d) conditional end-of-frame state
    iterations: int  # Jacobi iterations (deep block, summed over chunks; the most of any row) or N for sequential
    row_iterations: Tensor | None = None  # (B,) each row's iterations


def guide(mu_c: Tensor, ls_c: Tensor, mu_u: Tensor, ls_u: Tensor, w: float) -> tuple[Tensor, Tensor]:
    """STARFlow's Gaussian guidance: sample ∝ p_c^{1+w} / p_u^w for Gaussian conditionals.

    s = clip(σ_c²/σ_u², 0, 1); σ̃ = σ_c / √(1+w−ws); μ̃ = μ_c + ws/(1+w−ws)·(μ_c − μ_u). Returns μ̃, log σ̃.
    """
    s = torch.exp(2 * (ls_c - ls_u)).clamp(0, 1)
    denom = 1 + w - w * s
    return mu_c + (w * s / denom) * (mu_c - mu_u), ls_c - 0.5 * torch.log(denom)


def _affine(deep_params: tuple[Tensor, Tensor, Tensor], z: Tensor, w: float, b: int) -> tuple[Tensor, Tensor, Tensor]:
    """(mean, log σ, h) of a possibly doubled [cond; uncond] batch → new values, cond mean, cond log σ."""
    mu, ls, _ = deep_params
    mu_c, ls_c = mu[:b], ls[:b]
    if mu.shape[0] > b:
        mu_g, ls_g = guide(mu_c, ls_c, mu[b:], ls[b:], w)
    else:
        mu_g, ls_g = mu_c, ls_c
    return mu_g + torch.exp(ls_g) * z, mu_c, ls_c


def _dup(x: Tensor, batch: int) -> Tensor:
    return x if x.shape[0] == batch else torch.cat([x] * (batch // x.shape[0]))


def invert_deep(
    net: FlowNet, state: DeepState, cond: Tensor, z: Tensor, s: SamplerSettings, per_row: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Generate the next frame's u from noise z (B, N, D), appending it to `state`.

    cond (B2, d) is the action embedding entering the frame, B2 = B or 2B ([cond; uncond] with guidance).
    per_row (Jacobi over chunks): the stopping rule applies to each row on its own, a converged row frozen while the
    others iterate, so B independent worlds stepped together get what each would get alone.
    Returns u (B, N, D), cond-branch mean and log σ (B, N, D) at the final inputs, h_end (B, d), and the passes
    each row ran (B,) (deep block, summed over chunks; N for sequential).
    """
    deep, b, b2 = net.deep, z.shape[0], cond.shape[0]
    n = deep.n_tokens
    state.cache.evict_frames_before(state.next_frame - deep.window + 1)
    u = (state.prev_u[:b].clone() if state.prev_u is not None else torch.zeros_like(z))  # video-aware warm start
    mean, logs = torch.empty_like(z), torch.empty_like(z)
    slots = lambda a, e: deep.segment_inputs(_dup(u, b2)[:, None], cond[:, None])[:, 0, a:e]
    iters = torch.zeros(b, dtype=torch.long)
    if s.method == "jacobi" and s.freeze_prefix:
        mean, logs, h, passes = _jacobi_prefix(deep, state, u, z, slots, s)
        iters += passes
    elif s.method == "sequential":
        for i in range(n):
            p = deep.frame_params(state, slots(i, i + 1), i, commit=True)
            u[:, i : i + 1], mean[:, i : i + 1], logs[:, i : i + 1] = _affine(p, z[:, i : i + 1], s.guidance, b)
        iters += n
        h = deep.frame_params(state, slots(n, n + 1), n, commit=True)[2]
    else:
        chunk = s.chunk or n
        for a in range(0, n, chunk):
            e = min(a + chunk, n)
            active = torch.ones(b, dtype=torch.bool, device=z.device)
            if s.low_precision:
                iters += _low_precision_passes(deep, state, u, z, slots, a, e, s)
            for _ in range(s.max_iter or (e - a)):
                new = _affine(deep.frame_params(state, slots(a, e), a, commit=False), z[:, a:e], s.guidance, b)[0]
                iters += active.cpu()
                moved = ~((new - u[:, a:e]).abs().flatten(1).amax(1) < s.tol)  # NaN counts as moved
                now = active & moved if per_row else active & bool(moved.any())
                if bool(active.all()):
                    u[:, a:e] = new
                else:  # in place, so u keeps its memory layout
                    u[active, a:e] = new[active]
                active = now
                if not bool(active.any()):
                    break
            h = commit_chunk(deep, state, slots, a, e, mean, logs)
    state.prev_u = _dup(u, b2)
    state.next_frame += 1
    return u, mean, logs, h[:b, -1], iters


def _low_precision_passes(deep: DeepBlock, state: DeepState, u: Tensor, z: Tensor,
                          slots: Callable[[int, int], Tensor], a: int, e: int, s: SamplerSettings) -> int:
    """bfloat16 Jacobi passes over tokens a…e, updating u in place, until the largest update (over all rows) is
    below `switch_tol` or the chunk's pass cap; returns how many ran. The float32 passes that follow start here."""
    passes = 0
    for _ in range(s.max_iter or (e - a)):
        with compute("bfloat16", z.device.type):
            params = deep.frame_params(state, slots(a, e), a, commit=False)
        new = _affine(params, z[:, a:e], s.guidance, z.shape[0])[0]
        delta = float((new - u[:, a:e]).abs().max())
        u[:, a:e] = new
        passes += 1
        if not delta >= s.switch_tol:  # NaN stops here too: the float32 passes decide
            break
    return passes


def commit_chunk(deep: DeepBlock, state: DeepState, slots: Callable[[int, int], Tensor], a: int, e: int,
                 mean: Tensor, logs: Tensor) -> Tensor:
    """The commit pass of tokens a…e at their converged inputs: writes their mean and log σ (B rows) into `mean`
    and `logs` and returns the pass's hidden states (the last chunk also runs slot N, for the heads)."""
    b = mean.shape[0]
    last = e + 1 if e == deep.n_tokens else e
    p = deep.frame_params(state, slots(a, last), a, commit=True)
    mean[:, a:e], logs[:, a:e] = p[0][:b], p[1][:b]
    return p[2]


def _jacobi_prefix(deep: DeepBlock, state: DeepState, u: Tensor, z: Tensor, slots: Callable[[int, int], Tensor],
                   s: SamplerSettings) -> tuple[Tensor, Tensor, Tensor, int]:
    """Jacobi with the converged prefix frozen, updating u (B, N, D) in place; returns mean, log σ, the hidden
    states of the pass that committed slot N, and the number of passes.

    After a pass, every token before the first one that moved by ≥ tol (in any row) moved by less than tol, so the
    slots up to that token ran on settled inputs: they and that token are final (up to tol) and are committed;
    the next pass starts after them. Its cost falls with the unsettled suffix, and the pass in which nothing moves
    is also the commit pass. GS-Jacobi (arXiv 2505.12849) and SeJD (arXiv 2505.24791) exploit the same structure.
    """
    b, n = z.shape[0], deep.n_tokens
    mean, logs = torch.empty_like(z), torch.empty_like(z)
    passes, chunk, h = 0, s.chunk or n, z.new_empty(0)
    for a in range(0, n, chunk):
        e = min(a + chunk, n)
        last = e + 1 if e == n else e  # the last chunk also runs slot N (end-of-frame state for the heads)
        lo = a
        if s.low_precision:
            passes += _low_precision_passes(deep, state, u, z, slots, a, e, s)
        for _ in range(s.max_iter or last - a):
            p = deep.frame_params(state, slots(lo, last), lo, commit=False)
            passes += 1
            keep = last - lo
            if lo < e:
                new, mean[:, lo:e], logs[:, lo:e] = _affine(p, z[:, lo:e], s.guidance, b)
                moved = ~((new - u[:, lo:e]).abs().amax(dim=(0, 2)) < s.tol)  # (e - lo,), NaN counts as moved
                u[:, lo:e] = new
                if bool(moved.any()):
                    keep = int(moved.int().argmax()) + 1
            deep.commit_slots(state, lo, keep)
            lo, h = lo + keep, p[2]
            if lo == last:
                break
        if lo < last:  # capped: one more pass at the final inputs keeps the cache consistent with u
            p = deep.frame_params(state, slots(lo, last), lo, commit=True)
            mean[:, lo:e], logs[:, lo:e] = p[0][:b, : e - lo], p[1][:b, : e - lo]
            h = p[2]
    return mean, logs, h, passes


def invert_local(
    net: FlowNet, u: Tensor, s: SamplerSettings, init: list[Tensor] | None = None, per_row: bool = False
) -> tuple[Tensor, list[Tensor]]:
    """Invert the shallow blocks (and channel mix) of one frame: u (M, N, D) → codec tokens x (M, N, D).

    init: per-block first guesses (the previous frame's values at each level: a video-aware warm start).
    per_row: Jacobi stops per row (see `LocalBlock.inverse`).
    Returns x and the values at every level (for the next frame's warm start).
    """
    levels: list[Tensor] = []
    h = u
    for k in reversed(range(len(net.local))):
        block = cast(LocalBlock, net.local[k])  # FlowNet.local holds LocalBlocks
        h = block.inverse(h, None if init is None else init[k], s.tol, s.max_iter,
                          sequential=s.method == "sequential", per_row=per_row,
                          switch_tol=s.switch_tol if s.low_precision else None)
        levels.insert(0, h)
    if net.mix is not None:
        h = net.mix.inverse(h)
    return h, levels


@torch.no_grad()
def sample_frame(net: FlowNet, state: DeepState, cond: Tensor, z: Tensor, s: SamplerSettings,
                 local_init: list[Tensor] | None = None, per_row: bool = False) -> tuple[FrameSample, list[Tensor]]:
    """One new frame from noise z (B, N, D) (already scaled by the temperature), appended to `state`.

    per_row: B independent worlds (sessions stepped together): Jacobi stops per row and the log-likelihood is
    summed row by row, so each row equals what it would be alone (a float32 sum over a (B, N, D) tensor can round
    differently from the same sum over (1, N, D)). `FrameSample.row_iterations` then holds each row's passes.
    """
    u, mean, logs, h_end, iters = invert_deep(net, state, cond, z, s, per_row)
    x, levels = invert_local(net, u, s, local_init, per_row)
    _, ld_local = net.local_forward(x[:, None])
    if per_row:
        tok = torch.cat([_token_log_prob(u[i : i + 1], mean[i : i + 1], logs[i : i + 1], ld_local[i : i + 1, 0])
                         for i in range(u.shape[0])])
    else:
        tok = _token_log_prob(u, mean, logs, ld_local[:, 0])
    return FrameSample(u, x, tok.sum(-1), tok, h_end, int(iters.max()), iters), levels


def _token_log_prob(u: Tensor, mean: Tensor, logs: Tensor, ld_local: Tensor) -> Tensor:
    """Per-token exact log p (…, N) from the deep block's value, mean and log σ (…, N, D) and the local log-det."""
    z_c = (u - mean) * torch.exp(-logs)
    return -0.5 * (z_c.pow(2) + LOG_2PI).sum(-1) - logs.sum(-1) + ld_local


@torch.no_grad()
def sample_best_of(net: FlowNet, state: DeepState, cond: Tensor, z: Tensor, s: SamplerSettings, k: int,
                   local_init: list[Tensor] | None = None) -> tuple[FrameSample, list[Tensor], DeepState]:
    """`sample_frame` with k candidates per world, keeping each world's likeliest (highest exact log p).

    z: (B·k, N, D), candidate j of world i in row i·k + j. `state` (B or 2B rows when guided: [cond; null]) is
    not changed. Returns the kept sample and local-block levels (B rows) and a new state holding the kept frames.
    """
    b, g = z.shape[0] // k, cond.shape[0] * k // z.shape[0]  # worlds; 2 when guided
    rows = torch.arange(g * b, device=z.device).repeat_interleave(k)
    big = state.select(rows)
    init = None if local_init is None else [t.repeat_interleave(k, 0) for t in local_init]
    sample, levels = sample_frame(net, big, cond[rows], z, s, init)
    best = sample.log_prob.view(b, k).argmax(1) + torch.arange(b, device=z.device) * k
    keep = torch.cat([best + i * b * k for i in range(g)])
    kept = FrameSample(sample.u[best], sample.x[best], sample.log_prob[best], sample.token_log_prob[best],
                       sample.h_end[best], sample.iterations, None)
    return kept, [t[best] for t in levels], big.select(keep)
