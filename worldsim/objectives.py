"""Training objectives on a batch of clips: the flow's NLL (noise augmentation, condition dropout) and heads."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .model.flow import LN2, FlowNet, FlowOut


@dataclass
class Batch:
    """frames uint8 (B, T, H, W, 3); actions B lists of T-1 texts; prompts B texts or None;
    rewards (B, T-1) and terminated (B, T-1) for the transitions (optional)."""

    frames: Tensor
    actions: list[list[str | None]]
    prompts: list[str | None]
    rewards: Tensor | None = None
    terminated: Tensor | None = None


def _drop(items: list, p: float, gen: torch.Generator) -> list:
    keep = torch.rand(len(items), generator=gen) >= p
    return [x if k else None for x, k in zip(items, keep.tolist(), strict=True)]


def flow_forward(net: FlowNet, batch: Batch, gen: torch.Generator, train: bool = True) -> tuple[FlowOut, Tensor]:
    """Noise-augmented forward pass over whole clips. Returns the flow output and the noisy tokens (B, T, N, D).

    In training, each action and prompt is replaced by its null embedding with probability cfg.cond_drop.
    """
    cfg = net.cfg
    b, t = batch.frames.shape[:2]
    with torch.no_grad():  # the codec is frozen while the flow trains
        x = net.encode_frames(batch.frames)
    x = x + cfg.noise_std * net.noise(x.shape, gen)
    actions, prompts = batch.actions, batch.prompts
    if train and cfg.cond_drop > 0:
        actions = [_drop(row, cfg.cond_drop, gen) for row in actions]
        prompts = _drop(prompts, cfg.cond_drop, gen)
    cond = net.frame_conditions(net.action_embeddings(actions) if t > 1 else None, b, t, 0)
    state = net.new_state(net.prompt_embeddings(prompts), frames_hint=t)
    return net(x, cond, state), x


def nll_loss(out: FlowOut, dims_per_frame: int) -> tuple[Tensor, Tensor]:
    """Mean negative log-likelihood per dimension (nats) and the same in bits/dim (detached)."""
    nll = -out.log_prob.mean() / dims_per_frame
    return nll, (nll / LN2).detach()


def heads_loss(net: FlowNet, out: FlowOut, batch: Batch) -> Tensor:
    """Reward (MSE) and termination (BCE) on the transitions: frame t+1's end state predicts transition t."""
    deep = net.deep
    if deep.reward is None or deep.termination is None or batch.rewards is None:
        return out.log_prob.new_zeros(())
    if batch.terminated is None:
        raise ValueError("a batch with rewards needs its terminated flags too, (B, T-1)")
    h = out.h_end[:, 1:]
    reward = deep.reward(h).squeeze(-1)
    term = deep.termination(h).squeeze(-1)
    term_loss = F.binary_cross_entropy_with_logits(term, batch.terminated.to(term.device).float())
    return F.mse_loss(reward, batch.rewards.to(reward.device).float()) + term_loss
