"""Causal denoising of sampled frames: flow-score matching target/loss, learned denoiser, Tweedie fallback.

Everything here is zero-lookahead: the score of frame t is σ·∇_{x̃_t} log p(x̃_t | x̃_<t) with the past held
fixed (frame t's own conditional), never the gradient of the whole clip's likelihood (which sees the future).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .model.cache import DeepState
from .model.flow import FlowNet


def frame_score(net: FlowNet, state: DeepState, x: Tensor, cond: Tensor) -> Tensor:
    """σ·∇_x log p(x | past) for the next frame's noisy tokens x (B, N, D); `state` (the past) is not modified.

    cond (B, d) is the frame's action embedding. A state with more rows than x (guidance) uses its first B.
    """
    b = x.shape[0]
    st = state.select(torch.arange(b, device=x.device)) if state.cache.batch != b else state.clone()
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        out = net(xg[:, None], cond[:, None], st)
        (grad,) = torch.autograd.grad(out.log_prob.sum(), xg)
    return net.cfg.noise_std * grad


def fsm_target(net: FlowNet, x: Tensor, cond: Tensor, prompt: Tensor, t: int) -> Tensor:
    """Flow-score-matching target for frame t of noisy clips x (B, T, N, D): σ·∇ log p(x̃_t | x̃_<t)."""
    state = net.new_state(prompt, frames_hint=t + 1)
    with torch.no_grad():
        if t > 0:
            net(x[:, :t], cond[:, :t], state)
    return frame_score(net, state, x[:, t], cond[:, t]).detach()


def fsm_loss(net: FlowNet, x: Tensor, cond: Tensor, prompt: Tensor, t: int) -> Tensor:
    """MSE between the denoiser's prediction for frame t and the flow-score target (flow gets no gradient)."""
    if net.denoiser is None:
        raise ValueError("the flow-score-matching loss needs a model with a denoiser (config denoiser.enabled)")
    target = fsm_target(net, x, cond, prompt, t)
    prev = x[:, t - 1] if t > 0 else None
    return F.mse_loss(net.denoiser(x[:, t], prev), target)


def denoise(net: FlowNet, x: Tensor, prev: Tensor | None, state_before: DeepState | None = None,
            cond: Tensor | None = None, mode: str = "learned") -> Tensor:
    """One Tweedie step x̂ = x̃ + σ·(σ∇ log p): from the learned denoiser ('learned'), from autograd through the
    flow ('tweedie', needs the state before the frame and its cond), or no step ('none')."""
    sigma = net.cfg.noise_std
    if mode == "none":
        return x
    if mode == "learned" and net.denoiser is not None:
        with torch.no_grad():
            return x + sigma * net.denoiser(x, prev)
    if state_before is None or cond is None:
        raise ValueError("Tweedie denoising needs the state before the frame and its action embedding")
    return x + sigma * frame_score(net, state_before, x, cond)
