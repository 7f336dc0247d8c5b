"""Vector actions end to end: the spec, sessions, score, counterfactual, the Gymnasium envs, the batched env."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from conftest import noisy_heads
from gymnasium.utils.env_checker import check_env

import worldsim
from worldsim import ActionSpec, ConfigError, InvalidAction, WorldModel
from worldsim.checkpoint import load_checkpoint
from worldsim.envs.world_model_env import WorldModelEnv
from worldsim.envs.world_model_vector import WorldModelVectorEnv

SPEC = {"kind": "vector", "dim": 2, "low": [-1.0, 0.0], "high": [1.0, 4.0]}


@pytest.fixture(scope="module")
def vec() -> WorldModel:
    return WorldModel.from_config(worldsim.preset("tiny").merged(action_spec=SPEC))


@pytest.fixture(scope="module")
def vec_live() -> WorldModel:
    """The vector model with its zero-initialised heads filled with noise, so actions change what it predicts."""
    return noisy_heads(WorldModel.from_config(worldsim.preset("tiny").merged(action_spec=SPEC)))


def clip(t: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)


def test_spec_validates_itself():
    with pytest.raises(ValueError, match="needs dim ≥ 1 and dim values in low and high"):
        ActionSpec(kind="vector", dim=2, low=(0.0,), high=(1.0, 1.0))
    with pytest.raises(ValueError, match="need finite low < high"):
        ActionSpec.vector([1.0], [1.0])
    with pytest.raises(ValueError, match="non-empty vocabulary"):
        ActionSpec(kind="text")
    spec = ActionSpec.vector([-1.0, 0.0], [1.0, 4.0])
    assert np.allclose(spec.normalise([[1.0, 0.0]]), [[1.0, -1.0]])
    assert np.allclose(spec.denormalise(spec.normalise([0.25, 3.0])), [0.25, 3.0])


def test_session_takes_vectors_and_names_bad_ones(vec):
    assert vec.action_spec.is_vector and vec.vocabulary == ()
    with vec.session(seed=0) as s:
        s.reset(frames=clip(2), actions=[np.array([0.0, 1.0])])
        out = s.step(np.array([0.5, 2.0]))
        assert out.frame.shape == (16, 16, 3) and np.isfinite(out.log_prob)
        s.step([0, 4])  # a list of numbers, ints included, is a vector too
        for bad, match in (("move up", "takes vector actions.*received the text 'move up'"),
                           (np.zeros(3), r"received shape \(3,\); expected \(2,\)"),
                           (np.array([np.nan, 1.0]), "non-finite"),
                           (np.array([0.0, 5.0]), r"component 1 is 5, outside its bounds \[0, 4\]"),
                           (True, "received a bool")):
            with pytest.raises(InvalidAction, match=match):
                s.step(bad)
        assert len(s.frames) == 4  # refused steps changed nothing


def test_out_of_bounds_clip_mode_clips_and_says_so(caplog):
    spec = {**SPEC, "out_of_bounds": "clip"}
    wm = WorldModel.from_config(worldsim.preset("tiny").merged(action_spec=spec))
    with wm.session(seed=0) as s, caplog.at_level("WARNING"):
        s.reset(frames=clip(1))
        s.step(np.array([3.0, 1.0]))
    assert np.allclose(s.actions[-1][0], [1.0, 1.0]) and "clipped" in caplog.text


def test_actions_change_the_frame_and_the_likelihood(vec_live):
    vec, frames = vec_live, []
    for a in ([-1.0, 0.0], [1.0, 4.0]):
        with vec.session(seed=3) as s:
            s.reset(frames=clip(1))
            frames.append(s.step(np.array(a)).frame)
    assert not np.array_equal(*frames)
    a = vec.score(clip(), actions=np.zeros((3, 2))).log_prob
    b = vec.score(clip(), actions=np.full((3, 2), 0.5)).log_prob
    assert a[0] == b[0] and not np.allclose(a[1:], b[1:])  # frame 0 has no action; later frames see theirs


def test_batched_vectors_and_guidance(vec):
    with vec.session(seed=0, batch_size=3, guidance=1.5) as s:
        s.reset(frames=np.stack([clip(1)] * 3))
        out = s.step(np.array([[0.0, 0.0], [0.5, 1.0], [-1.0, 4.0]]))
        assert out.frame.shape == (3, 16, 16, 3) and np.shape(out.log_prob) == (3,)
        with pytest.raises(InvalidAction, match="batch_size=3; expected a list of 3 values, received 2"):
            s.step(np.zeros((2, 2)))


def test_counterfactual_with_vectors_keeps_the_past(vec_live):
    vec, acts = vec_live, np.zeros((3, 2))
    replay = vec.counterfactual(clip(), acts, np.full((3, 2), 0.9), from_step=2)
    same = vec.counterfactual(clip(), acts, acts, from_step=2)
    assert np.array_equal(replay[:2], same[:2]) and not np.array_equal(replay[2:], same[2:])


def test_spec_survives_a_checkpoint(vec, tmp_path):
    vec.save(tmp_path / "m")
    config, _, _ = load_checkpoint(tmp_path / "m")
    assert config.action_spec == vec.action_spec
    loaded = WorldModel.from_pretrained(tmp_path / "m")
    a = loaded.score(clip(), actions=np.zeros((3, 2))).log_prob
    assert np.allclose(a, vec.score(clip(), actions=np.zeros((3, 2))).log_prob, atol=1e-4)


def test_env_has_a_box_space_and_passes_check_env(vec):
    env = WorldModelEnv(vec)
    assert env.action_space == gym.spaces.Box(np.array([-1, 0], np.float32), np.array([1, 4], np.float32),
                                              (2,), np.float32)
    unit = {"kind": "vector", "dim": 3, "low": [-1.0] * 3, "high": [1.0] * 3}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # clean: no warning either (a [-1, 1] box is what Gymnasium recommends)
        made = gym.make("worldsim/WorldModel-v0", model=WorldModel.from_config(
            worldsim.preset("tiny").merged(action_spec=unit)))
        check_env(made.unwrapped)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([0.5, 1.0], np.float32))
    assert info["action"] == [0.5, 1.0]
    with pytest.raises(ConfigError, match="action_mode='discrete' does not fit this model's vector actions"):
        WorldModelEnv(vec, action_mode="discrete")
    with pytest.raises(ConfigError, match="action_mode='vector' does not fit this model's text actions"):
        WorldModelEnv("tiny", action_mode="vector")


def test_vector_env_takes_a_batch_of_vectors(vec):
    envs = WorldModelVectorEnv(3, vec, max_episode_steps=2)
    assert envs.single_action_space.shape == (2,) and envs.action_space.shape == (3, 2)
    envs.reset(seed=0)
    for _ in range(3):  # crosses an autoreset
        frames, rewards, term, trunc, info = envs.step(envs.action_space.sample())
        assert frames.shape == (3, 16, 16, 3) and "action_text" not in info
    envs.close()


def test_a_float32_value_on_a_bound_is_inside_it():
    spec = ActionSpec.vector([0.0], [0.4])
    assert spec.check(np.array([np.float32(0.4)]))[0] == np.float32(0.4)  # float32(0.4) > 0.4 in float64
