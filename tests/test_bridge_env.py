"""`WorldModelEnv` against a served model: `gym.make(..., model=RemoteWorldModel(addr))` runs unchanged and gives
the in-process env's frames, rewards and log-likelihoods for the same seed."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import worldsim.envs  # noqa: F401  (registers the envs)
from worldsim.bridges import BridgeServer, RemoteWorldModel
from worldsim.errors import ConfigError


@pytest.fixture(scope="module")
def remote(tiny):
    with BridgeServer(tiny) as srv, RemoteWorldModel(srv.port, timeout_s=10.0) as client:
        yield client


RESETS = [{"world_seed": 3}, {"frames": np.full((2, 16, 16, 3), 90, np.uint8), "actions": ["move up"]},
          {"prompt": "a small room"}]


@pytest.mark.parametrize("options", RESETS, ids=["world_seed", "frames", "prompt"])
def test_remote_env_equals_local_env(tiny, remote, options):
    local = gym.make("worldsim/WorldModel-v0", model=tiny)
    served = gym.make("worldsim/WorldModel-v0", model=remote)
    assert served.observation_space == local.observation_space and served.action_space == local.action_space
    try:
        (a, ia), (b, ib) = local.reset(seed=7, options=options), served.reset(seed=7, options=options)
        assert np.array_equal(a, b) and ia == ib
        for action in [0, 3, 4, 1]:
            oa, ra, ta, _, ia = local.step(action)
            ob, rb, tb, _, ib = served.step(action)
            assert np.array_equal(oa, ob) and (ra, ta) == (rb, tb)
            assert ia["log_prob"] == ib["log_prob"] and ia["bits_per_dim"] == ib["bits_per_dim"]
            assert ia["iterations"] == ib["iterations"] and ia["action_text"] == ib["action_text"]
        assert np.array_equal(local.render(), served.render())
    finally:
        local.close()
        served.close()


def test_remote_env_reward_fn_and_text_actions(tiny, remote):
    """A reward function runs on the client, on each served frame; text actions with suggestions still work."""
    reward_fn = lambda frame, action: float(frame.mean()) + len(action)
    local = gym.make("worldsim/WorldModel-v0", model=tiny, action_mode="text", reward_fn=reward_fn)
    served = gym.make("worldsim/WorldModel-v0", model=remote, action_mode="text", reward_fn=reward_fn)
    local.reset(seed=1)
    served.reset(seed=1)
    a, b = local.step("move left"), served.step("move left")
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] == pytest.approx(float(a[0].mean()) + 9, rel=1e-6)
    with pytest.raises(Exception, match="unknown action 'move lefft'.*move left"):
        served.step("move lefft")
    local.close()
    served.close()


def test_remote_model_mirrors_config(tiny, remote):
    cfg = remote.config
    assert (cfg.height, cfg.width, cfg.fps, cfg.actions) == (16, 16, tiny.config.fps, tiny.vocabulary)
    assert cfg.likelihood_space == tiny.config.likelihood_space and cfg.dims_per_frame == tiny.net.dims_per_frame
    with pytest.raises(ConfigError, match="remote sessions have batch_size 1; received batch_size=4"):
        remote.session(batch_size=4)
