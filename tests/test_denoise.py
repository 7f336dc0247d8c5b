"""Causal denoiser: the flow-score target is frame t's own conditional score, with zero lookahead."""

from __future__ import annotations

import numpy as np
import torch
from conftest import randomize

from worldsim import WorldModel
from worldsim.denoise import denoise, frame_score, fsm_loss, fsm_target
from worldsim.optim import adamw


def setup(wm, b=2, t=4, seed=0):
    net, cfg = wm.net, wm.config
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, cfg.tokens_per_frame, cfg.token_dim, generator=gen)
    cond = net.frame_conditions(net.action_embeddings([["stay", "move left", "move up"][: t - 1]] * b), b, t, 0)
    return x, cond.detach(), net.prompt_embeddings(["room"] * b).detach()


def test_target_is_the_own_frame_score_holding_the_past_fixed(tiny):
    net = tiny.net
    x, cond, prompt = setup(tiny)
    t = 2
    target = fsm_target(net, x, cond, prompt, t)
    # brute force: the log-likelihood of frame t alone, differentiated w.r.t. frame t with the past as constants
    past, now = x[:, :t].clone(), x[:, t].clone().requires_grad_(True)
    out = net(torch.cat([past, now[:, None]], 1), cond[:, : t + 1], net.new_state(prompt))
    (grad,) = torch.autograd.grad(out.log_prob[:, t].sum(), now)
    assert (target - net.cfg.noise_std * grad).abs().max() <= 1e-5
    # the whole clip's gradient also contains the future frames' terms: a different (non-causal) quantity
    xs = x.clone().requires_grad_(True)
    (full,) = torch.autograd.grad(net(xs, cond, net.new_state(prompt)).log_prob.sum(), xs)
    assert (net.cfg.noise_std * full[:, t] - target).abs().max() > 1e-4


def test_target_and_denoiser_have_zero_lookahead(tiny):
    net = tiny.net
    x, cond, prompt = setup(tiny)
    changed = x.clone()
    changed[:, 3] += 1.0
    np.testing.assert_array_equal(fsm_target(net, x, cond, prompt, 2).numpy(),
                                  fsm_target(net, changed, cond, prompt, 2).numpy())
    with torch.no_grad():
        a = net.denoiser(x[:, 2], x[:, 1])
        b = net.denoiser(changed[:, 2], changed[:, 1])
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_tweedie_fallback_is_one_step_along_the_own_score(tiny):
    net = tiny.net
    x, cond, prompt = setup(tiny)
    state = net.new_state(prompt)
    with torch.no_grad():
        net(x[:, :2], cond[:, :2], state)
    out = denoise(net, x[:, 2], x[:, 1], state, cond[:, 2], mode="tweedie")
    expected = x[:, 2] + net.cfg.noise_std * frame_score(net, state, x[:, 2], cond[:, 2])
    assert torch.allclose(out, expected) and state.next_frame == 2  # the state was not advanced
    assert torch.equal(denoise(net, x[:, 2], None, mode="none"), x[:, 2])


def test_training_the_denoiser_reduces_the_flow_score_matching_loss():
    wm = randomize(WorldModel.from_config("tiny", seed=1))  # its own model: training changes the weights
    net = wm.net
    x, cond, prompt = setup(wm, b=8, seed=1)
    before = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("denoiser.")}
    opt = adamw(net.denoiser.parameters(), 3e-3)
    losses = []
    for step in range(60):
        loss = fsm_loss(net, x, cond, prompt, 1 + step % 3)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:3])
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # the flow gets no gradient from it
