"""Vector actions over the ZeroMQ bridge: msgpack float lists; the same frames as in process; named errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import worldsim
import worldsim.envs  # noqa: F401  (registers the envs)
from worldsim import WorldModel
from worldsim.bridges import BridgeError, BridgeServer, RemoteWorldModel

SPEC = {"kind": "vector", "dim": 2, "low": [-1.0, -1.0], "high": [1.0, 1.0]}
START = np.full((1, 16, 16, 3), 70, np.uint8)


@pytest.fixture(scope="module")
def served():
    wm = WorldModel.from_config(worldsim.preset("tiny").merged(action_spec=SPEC), seed=1)
    with BridgeServer(wm) as srv, RemoteWorldModel(srv.port, timeout_s=10.0) as client:
        yield wm, client


def test_vector_steps_over_the_wire_equal_in_process(served):
    wm, client = served
    assert client.action_spec == wm.action_spec
    acts = [np.array([0.5, -0.25]), [1, 0], (0.0, 1.0)]  # an array, ints, a tuple: all go as float lists
    with wm.session(seed=3) as local, client.session(seed=3) as remote:
        local.reset(frames=START, actions=None)
        remote.reset(frames=START)
        for a in acts:
            x, y = local.step(np.asarray(a, np.float32)), remote.step(a)
            assert np.array_equal(x.frame, y.frame) and x.log_prob == y.log_prob
    score = client.score(np.repeat(START, 3, axis=0), actions=[[0.1, 0.2], [0.3, 0.4]])
    assert np.allclose(score.log_prob, wm.score(np.repeat(START, 3, axis=0), actions=np.array(
        [[0.1, 0.2], [0.3, 0.4]])).log_prob)


def test_bad_vector_actions_get_named_errors_and_change_nothing(served):
    _, client = served
    with client.session(seed=0) as s:
        s.reset(frames=START)
        for bad, code, match in (("move up", "invalid_action", "takes vector actions"),
                                 ([0.0, 0.0, 0.0], "invalid_action", r"shape \(3,\); expected \(2,\)"),
                                 ([2.0, 0.0], "invalid_action", "outside its bounds"),
                                 ([float("nan"), 0.0], "bad_request", "finite"),
                                 ([], "bad_request", "action")):
            with pytest.raises(BridgeError, match=match) as err:
                s.step(bad)
            assert err.value.code == code
        assert s.step([0.0, 0.0]).frame.shape == (16, 16, 3)  # the session still steps, from where it was


def test_env_against_the_server_has_the_box_space(served):
    wm, client = served
    env = gym.make("worldsim/WorldModel-v0", model=client)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    env.reset(seed=0)
    obs, *_ = env.step(np.array([0.2, 0.2], np.float32))
    assert obs.shape == (16, 16, 3)
    env.close()
