"""Invertibility and exact log-determinants of every flow part, on random non-identity weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldsim.model.flow import LOG_2PI
from worldsim.sampling import SamplerSettings, invert_deep, invert_local

EXACT = SamplerSettings(method="sequential")
JACOBI = SamplerSettings(method="jacobi", tol=1e-7)


def tokens(wm, b=2, t=3, seed=0):
    cfg = wm.config
    return torch.randn(b, t, cfg.tokens_per_frame, cfg.token_dim, generator=torch.Generator().manual_seed(seed))


def conditions(wm, b, t, seed=0):
    net = wm.net
    acts = [[["move left", "stay", "move up"][(i + j + seed) % 3] for j in range(t - 1)] for i in range(b)]
    return net.frame_conditions(net.action_embeddings(acts), b, t, 0), net.prompt_embeddings(["a prompt"] * b)


@pytest.mark.parametrize("settings", [EXACT, JACOBI], ids=["sequential", "jacobi"])
@torch.no_grad()
def test_each_local_block_round_trips(tiny, settings):
    x = tokens(tiny)[:, 0]
    for block in tiny.net.local:
        z, _ = block(x)
        assert (z - x).abs().max() > 1e-2  # the block is not the identity
        x_back = block.inverse(z, tol=settings.tol, max_iter=settings.max_iter,
                               sequential=settings.method == "sequential")
        assert (x_back - x).abs().max() <= 1e-4


@torch.no_grad()
def test_channel_mix_round_trips(tiny):
    x = tokens(tiny)
    y, _ = tiny.net.mix(x)
    assert (tiny.net.mix.inverse(y) - x).abs().max() <= 1e-4


@pytest.mark.parametrize("settings", [EXACT, JACOBI], ids=["sequential", "jacobi"])
@torch.no_grad()
def test_deep_block_with_skip_prior_round_trips(tiny, settings):
    net, b, t = tiny.net, 2, 3
    u = tokens(tiny, b, t)
    cond, prompt = conditions(tiny, b, t)
    z, _, _ = net.deep(u, cond, net.new_state(prompt))
    state = net.new_state(prompt)
    for i in range(t):  # frames 1, 2 use the skip prior (their mean adds the previous frame)
        rec = invert_deep(net, state, cond[:, i], z[:, i], settings)[0]
        assert (rec - u[:, i]).abs().max() <= 1e-4


@torch.no_grad()
def test_skip_prior_makes_a_static_world_the_identity_at_init():
    from worldsim import WorldModel

    net = WorldModel.from_config("tiny", seed=3).net  # untrained: zero-initialised heads
    u = tokens(WorldModel(net), 1, 1).expand(1, 3, -1, -1).contiguous()
    cond, prompt = conditions(WorldModel(net), 1, 3)
    z, logdet, _ = net.deep(u, cond, net.new_state(prompt))
    assert torch.allclose(z[:, 0], u[:, 0]) and z[:, 1:].abs().max() < 1e-6
    assert logdet.abs().max() < 1e-5


@pytest.mark.parametrize("fixture", ["tiny", "tiny_latent"])
@torch.no_grad()
def test_whole_stack_round_trips(fixture, request):
    wm = request.getfixturevalue(fixture)
    net, b, t = wm.net, 2, 3
    x = tokens(wm, b, t)
    cond, prompt = conditions(wm, b, t)
    out = net(x, cond, net.new_state(prompt))
    state = net.new_state(prompt)
    for i in range(t):
        u = invert_deep(net, state, cond[:, i], out.z[:, i], JACOBI)[0]
        rec, _ = invert_local(net, u, JACOBI)
        assert (rec - x[:, i]).abs().max() <= 1e-4


def test_log_det_matches_brute_force_jacobian(tiny):
    net = tiny.net
    cond, prompt = conditions(tiny, 1, 2)
    x0 = tokens(tiny, 1, 2)

    def to_z(flat):
        out = net(flat.view_as(x0), cond, net.new_state(prompt))
        return out.z.flatten()

    jac = torch.autograd.functional.jacobian(to_z, x0.flatten())
    sign, brute = torch.linalg.slogdet(jac.double())
    with torch.no_grad():
        out = net(x0, cond, net.new_state(prompt))
    logdet = out.log_prob.sum() + 0.5 * (out.z.pow(2) + LOG_2PI).sum()
    assert sign.item() != 0
    assert abs(brute.item() - logdet.item()) <= 1e-3
    assert abs(logdet.item()) > 1.0  # a real, non-trivial volume change


@torch.no_grad()
def test_per_token_terms_sum_to_the_frame_log_likelihood(tiny):
    x = tokens(tiny)
    cond, prompt = conditions(tiny, 2, 3)
    out = tiny.net(x, cond, tiny.net.new_state(prompt))
    np.testing.assert_allclose(out.token_log_prob.sum(-1).numpy(), out.log_prob.numpy(), rtol=1e-5)
