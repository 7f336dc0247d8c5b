"""Counterfactual replay: the past is kept exactly, unchanged actions give the clip back, new ones change it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldsim import WorldModel
from worldsim.envs import PushWorld
from worldsim.envs.pushworld_eval import detect
from worldsim.errors import InvalidAction

ACTS = ["move up", "move left", "stay", "move right", "move down"]


def recorded(tiny):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)


def reconstruction(tiny, clip):
    net = tiny.net
    with torch.no_grad():
        return net.decode_tokens(net.encode_frames(torch.from_numpy(clip)[None]))[0].numpy()


def test_unchanged_actions_give_the_clip_back(tiny):
    clip = recorded(tiny)
    out = tiny.counterfactual(clip, ACTS, ACTS, from_step=2, prompt="a room")
    assert np.abs(out.astype(int) - reconstruction(tiny, clip).astype(int)).max() <= 1


def test_new_actions_keep_the_past_and_change_the_future(tiny):
    clip = recorded(tiny)
    new = list(ACTS)
    new[2:] = ["move down"] * 3
    out = tiny.counterfactual(clip, ACTS, new, from_step=3)
    np.testing.assert_array_equal(out[:3], reconstruction(tiny, clip)[:3])  # bit-identical before k
    assert np.abs(out[3:].astype(int) - clip[3:].astype(int)).max() > 10
    same = tiny.counterfactual(clip, ACTS, new, from_step=3)
    np.testing.assert_array_equal(out, same)  # deterministic: no sampling noise, only the clip's own


def test_new_prompt_changes_the_replay(tiny):
    clip = recorded(tiny)
    a = tiny.counterfactual(clip, ACTS, ACTS, from_step=1, prompt="a room")
    b = tiny.counterfactual(clip, ACTS, ACTS, from_step=1, prompt="a room", new_prompt="a different room")
    assert not np.array_equal(a[1:], b[1:])


def test_counterfactual_errors(tiny):
    clip = recorded(tiny)
    with pytest.raises(InvalidAction, match="from_step=0 is out of range .* expected 1 … 5"):
        tiny.counterfactual(clip, ACTS, ACTS, from_step=0)
    with pytest.raises(InvalidAction, match="new_actions: received 2 for a clip of 6 frames"):
        tiny.counterfactual(clip, ACTS, ACTS[:2], from_step=1)


def test_bundled_model_replays_a_walk_right_as_a_walk_down():
    wm = WorldModel.from_pretrained("pushworld-64")
    world = PushWorld(render_mode="rgb_array", action_mode="text")
    frames = [world.reset(seed=33)[0]]  # the agent starts on the left; the block and goal are off its paths
    actions = ["move right"] * 6
    frames += [world.step(a)[0] for a in actions]
    clip, k = np.stack(frames), 3
    new = actions[: k - 1] + ["move down"] * (len(actions) - k + 1)
    out = wm.counterfactual(clip, actions, new, from_step=k)
    np.testing.assert_array_equal(out[:k], reconstruction(wm, clip)[:k])  # the past is the clip's reconstruction
    agent = [detect(f)["agent"] for f in out]
    assert all(a is not None for a in agent), "the agent must stay visible"
    recorded = [detect(f)["agent"] for f in clip]
    assert recorded[-1][0] - recorded[k - 1][0] > 10  # the recording walks right …
    for t in range(k, len(out)):  # … the replay walks down from step k and no longer right
        assert agent[t][1] - agent[t - 1][1] > 1.5, (t, agent)
        assert abs(agent[t][0] - agent[k - 1][0]) < 2.0, (t, agent)
