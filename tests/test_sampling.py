"""Sampling: Jacobi equals sequential, cached equals uncached, seeds, guidance."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldsim.sampling import SamplerSettings, guide, sample_frame

SEQ = SamplerSettings(method="sequential")


def start(wm, b=2, frames=3, prompt="room", guided=False, seed=0):
    """A deep state holding `frames` random context frames, plus the next frame's condition and noise."""
    net, cfg = wm.net, wm.config
    gen = torch.Generator().manual_seed(seed)
    emb = net.prompt_embeddings([prompt] * b)
    acts = [["move left"] * frames for _ in range(b)]
    cond_all = net.frame_conditions(net.action_embeddings(acts), b, frames + 1, 0)
    if guided:
        null = net.frame_conditions(net.action_embeddings([[None] * frames] * b), b, frames + 1, 0)
        emb = torch.cat([emb, net.text.null_prompt.expand_as(emb)])
        cond_all = torch.cat([cond_all, null])
    state = net.new_state(emb)
    x = torch.randn(b, frames, cfg.tokens_per_frame, cfg.token_dim, generator=gen)
    with torch.no_grad():
        net(torch.cat([x, x]) if guided else x, cond_all[:, :frames], state)
    z = torch.randn(b, cfg.tokens_per_frame, cfg.token_dim, generator=gen)
    return state, cond_all[:, frames], z


@pytest.mark.parametrize("chunk", [None, 4])
@pytest.mark.parametrize("guidance", [0.0, 1.5])
def test_jacobi_equals_sequential(tiny, chunk, guidance):
    state, cond, z = start(tiny, guided=guidance > 0)
    ref, _ = sample_frame(tiny.net, state.clone(), cond, z, SamplerSettings(method="sequential", guidance=guidance))
    jac, _ = sample_frame(tiny.net, state.clone(), cond, z,
                          SamplerSettings(method="jacobi", tol=1e-6, chunk=chunk, guidance=guidance))
    assert (jac.x - ref.x).abs().max() <= 1e-3
    assert (jac.u - ref.u).abs().max() <= 1e-3
    assert abs(jac.log_prob - ref.log_prob).max() <= 1e-2
    assert jac.iterations < 4 * ref.iterations  # far fewer parallel passes than N sequential steps per chunk


def test_jacobi_warm_start_converges_in_few_iterations_on_a_static_world():
    from worldsim import WorldModel

    wm = WorldModel.from_config("tiny", seed=0)  # untrained: skip prior ⇒ the previous frame is the answer
    state, cond, z = start(wm)
    out, _ = sample_frame(wm.net, state, cond, z * 0, SamplerSettings(method="jacobi", tol=1e-6))
    assert out.iterations <= 2


def test_cached_generation_equals_an_uncached_parallel_pass(tiny):
    """Frames generated step by step through the KV cache (with window eviction) score the same log-likelihood
    and map back to the same noise in one parallel pass from scratch."""
    net, cfg = tiny.net, tiny.config
    b, steps = 2, cfg.deep.window + 3
    gen = torch.Generator().manual_seed(0)
    emb = net.prompt_embeddings(["room"] * b)
    acts = [["move up" if i % 2 else "stay" for i in range(steps)] for _ in range(b)]
    cond = net.frame_conditions(net.action_embeddings(acts), b, steps + 1, 0)
    state = net.new_state(emb)
    xs, zs, lps = [], [], []
    for t in range(steps + 1):
        z = torch.randn(b, cfg.tokens_per_frame, cfg.token_dim, generator=gen)
        s, _ = sample_frame(net, state, cond[:, t], z, SamplerSettings(method="jacobi", tol=1e-7))
        xs.append(s.x)
        zs.append(z)
        lps.append(s.log_prob)
    with torch.no_grad():
        out = net(torch.stack(xs, 1), cond, net.new_state(emb))
    assert (out.z - torch.stack(zs, 1)).abs().max() <= 1e-4
    np.testing.assert_allclose(out.log_prob.numpy(), torch.stack(lps, 1).numpy(), rtol=1e-5)


def test_incremental_scoring_equals_parallel_within_1e5(tiny):
    net, cfg = tiny.net, tiny.config
    t = 2 * cfg.deep.window + 1
    x = torch.randn(1, t, cfg.tokens_per_frame, cfg.token_dim, generator=torch.Generator().manual_seed(4))
    cond = net.frame_conditions(net.action_embeddings([["stay"] * (t - 1)]), 1, t, 0)
    emb = net.prompt_embeddings(["room"])
    with torch.no_grad():
        full = net(x, cond, net.new_state(emb))
        state = net.new_state(emb)
        parts = [net(x[:, i : i + 1], cond[:, i : i + 1], state) for i in range(t)]
    z = torch.cat([p.z for p in parts], 1)
    assert (z - full.z).abs().max() <= 1e-5
    assert state.cache.length <= cfg.deep.prompt_tokens + cfg.deep.window * (cfg.tokens_per_frame + 1)


def rollout(wm, seed, steps=4):
    with wm.session(seed=seed) as s:
        s.reset(prompt="a room")
        return np.stack([s.step(a).frame for a in ["move left", "stay", "move up", "move right"][:steps]])


def test_same_seed_same_frames_different_seed_different(tiny):
    np.testing.assert_array_equal(rollout(tiny, 7), rollout(tiny, 7))
    assert not np.array_equal(rollout(tiny, 7), rollout(tiny, 8))


def test_guidance_weight_zero_equals_conditional_sampling(tiny):
    plain_state, cond, z = start(tiny, guided=False)
    guided_state, cond2, _ = start(tiny, guided=True)
    s0 = SamplerSettings(method="jacobi", tol=1e-6, guidance=0.0)
    a, _ = sample_frame(tiny.net, plain_state, cond, z, s0)
    b, _ = sample_frame(tiny.net, guided_state, cond2, z, s0)
    assert (a.x - b.x).abs().max() <= 1e-5


def test_guidance_follows_the_starflow_gaussian_rule():
    # p_c = N(1, 0.5²), p_u = N(0, 1): p_c^{1+w} / p_u^w is Gaussian with precision (1+w)/σc² − w/σu².
    w, mu_c, s_c, mu_u, s_u = 2.0, 1.0, 0.5, 0.0, 1.0
    mu, log_sigma = guide(*(torch.tensor([v]) for v in (mu_c, math.log(s_c), mu_u, math.log(s_u))), w)
    precision = (1 + w) / s_c**2 - w / s_u**2
    mean = ((1 + w) * mu_c / s_c**2 - w * mu_u / s_u**2) / precision
    assert mu.item() == pytest.approx(mean) == pytest.approx(1.2)
    assert math.exp(log_sigma.item()) == pytest.approx(precision**-0.5) == pytest.approx(0.5 / math.sqrt(2.5))
    # σ_c > σ_u: the ratio is clipped to 1, which is ordinary CFG on the mean with the conditional scale.
    mu, log_sigma = guide(torch.tensor([1.0]), torch.tensor([math.log(2.0)]), torch.tensor([0.0]),
                          torch.tensor([0.0]), w)
    assert mu.item() == pytest.approx(1.0 + w * 1.0) and math.exp(log_sigma.item()) == pytest.approx(2.0)
