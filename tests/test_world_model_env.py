"""WorldModelEnv and WorldModelVectorEnv: the Gymnasium contract, reset options, text actions, one batched
forward pass per vector step, NEXT_STEP autoreset, and seeded determinism — on real tiny models."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import worldsim
import worldsim.envs  # registers the envs
from worldsim import WorldModel
from worldsim.envs import PushWorld
from worldsim.envs.world_model_env import WorldModelEnv, world_frame
from worldsim.envs.world_model_vector import WorldModelVectorEnv
from worldsim.errors import CheckpointError, ConfigError, InvalidAction, SessionStateError

ENV_ID = "worldsim/WorldModel-v0"


def make_vec(num_envs: int = 3, **kwargs) -> WorldModelVectorEnv:
    env = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", model="tiny", **kwargs)
    assert isinstance(env, WorldModelVectorEnv)
    return env


# ----- single env ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("action_mode", ["discrete", "text"])
def test_check_env_passes(action_mode):
    # Through gym.make so the env has a spec: check_env then also checks render modes and close via spec.make.
    env = gym.make(ENV_ID, model="tiny", action_mode=action_mode)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # check_env reports soft failures ("not equal although similar") as warnings
        check_env(env.unwrapped)
    env.close()


def test_make_gives_spaces_time_limit_and_step_info():
    env = gym.make(ENV_ID, model="tiny")
    assert env.spec.max_episode_steps == 480
    assert env.observation_space == gym.spaces.Box(0, 255, (16, 16, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(5)
    obs, info = env.reset(seed=0)
    assert obs.shape == (16, 16, 3) and obs.dtype == np.uint8 and isinstance(info["world_seed"], int)
    obs, reward, terminated, truncated, info = env.step(2)
    assert obs in env.observation_space and isinstance(reward, float)
    assert terminated is False and truncated is False
    assert set(info) == {"log_prob", "bits_per_dim", "iterations", "action_text"}
    assert info["action_text"] == worldsim.preset("tiny").actions[2]
    assert np.isfinite(info["log_prob"]) and info["bits_per_dim"] > 0 and info["iterations"] >= 1
    assert np.array_equal(env.render(), obs)
    env.close()
    env.close()


def test_default_reset_uses_a_pushworld_frame_resized_for_small_models():
    env = WorldModelEnv("tiny")
    obs, info = env.reset(seed=3)
    assert np.array_equal(obs, world_frame(16, 16, info["world_seed"])[0])


def test_reset_options_frames_and_prompt():
    env = WorldModelEnv("tiny")
    frames = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    obs, info = env.reset(seed=0, options={"frames": frames, "actions": ["move up"]})
    assert np.array_equal(obs, frames[-1]) and info == {}
    assert env.session.history.shape == (2, 16, 16, 3)
    imagined, info = env.reset(seed=0, options={"prompt": "a block near the top wall"})
    again, _ = env.reset(seed=0, options={"prompt": "a block near the top wall"})
    assert imagined.shape == (16, 16, 3) and info == {} and np.array_equal(imagined, again)
    with pytest.raises(ConfigError, match="unknown reset option 'frame'.*Did you mean 'frames'"):
        env.reset(options={"frame": frames})
    with pytest.raises(ConfigError, match="'frames' and 'world_seed' both"):
        env.reset(options={"frames": frames, "world_seed": 1})


def test_world_seed_gives_the_real_pushworld_first_frame():
    model = WorldModel.from_config(worldsim.preset("tiny").merged(height=32, width=32))
    env = WorldModelEnv(model)
    assert env.observation_space.shape == (32, 32, 3)
    obs, info = env.reset(seed=0, options={"world_seed": 7})
    real, _ = PushWorld(render_mode="rgb_array", size=32).reset(seed=7)
    assert np.array_equal(obs, real) and info == {"world_seed": 7}
    obs, *_ = env.step(0)
    assert obs.shape == (32, 32, 3)


def test_text_actions_strict_and_free():
    env = WorldModelEnv("tiny", action_mode="text")
    assert isinstance(env.action_space, gym.spaces.Text)
    assert env.action_space.sample() in worldsim.preset("tiny").actions
    env.reset(seed=0)
    _, _, _, _, info = env.step("move left")
    assert info["action_text"] == "move left"
    with pytest.raises(InvalidAction, match="unknown action 'move lefft'.*Did you mean 'move left'"):
        env.step("move lefft")
    free = WorldModelEnv("tiny", action_mode="text", strict_text=False)
    assert "jump over the block" in free.action_space
    free.reset(seed=0)
    assert free.step("jump over the block")[4]["action_text"] == "jump over the block"


def test_argument_and_state_errors():
    env = WorldModelEnv("tiny")
    with pytest.raises(SessionStateError, match="before reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(InvalidAction, match=r"action 7 is out of range; expected an int in \[0, 4\]"):
        env.step(7)
    with pytest.raises(InvalidAction, match="takes an int"):
        env.step("move up")
    with pytest.raises(ConfigError, match="action_mode='texts'.*Did you mean 'text'"):
        WorldModelEnv("tiny", action_mode="texts")
    with pytest.raises(ConfigError, match=r"session_kwargs\['seed'\] is set by the env"):
        WorldModelEnv("tiny", session_kwargs={"seed": 1})
    with pytest.raises(CheckpointError, match="no checkpoint directory, bundled model or preset named 'tiyn'.*"
                                              "Did you mean 'tiny'"):
        WorldModelEnv("tiyn")


def test_reward_fn_and_session_kwargs():
    env = WorldModelEnv("tiny", reward_fn=lambda frame, action: float(len(action)),
                        session_kwargs={"sampler": "sequential", "temperature": 0.5})
    env.reset(seed=0)
    assert env.step(4)[1] == float(len("stay"))
    assert env.session.settings.sampler == "sequential"


# ----- vector env ---------------------------------------------------------------------------------------------
def test_make_vec_steps_batched():
    envs = make_vec()
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert envs.observation_space.shape == (3, 16, 16, 3) and envs.action_space == gym.spaces.MultiDiscrete([5] * 3)
    assert envs.max_episode_steps == 480
    obs, info = envs.reset(seed=0)
    assert obs.shape == (3, 16, 16, 3) and obs.dtype == np.uint8 and info["world_seed"].shape == (3,)
    obs, rewards, terminated, truncated, info = envs.step(np.array([0, 1, 2]))
    assert obs.shape == (3, 16, 16, 3) and obs in envs.observation_space
    assert rewards.shape == terminated.shape == truncated.shape == (3,)
    assert list(info["action_text"]) == ["move up", "move down", "move left"]
    assert info["log_prob"].shape == (3,) and info["_log_prob"].all()
    assert len(envs.render()) == 3 and np.array_equal(envs.render()[1], obs[1])
    envs.close()


def test_vector_step_is_one_batched_forward_pass():
    # The sequential sampler makes the number of layer calls per step fixed (one per token slot), so a batched
    # step must make exactly as many calls as a single env's step, every one of them carrying all 3 sub-envs.
    kwargs = {"session_kwargs": {"sampler": "sequential"}}
    envs, single = make_vec(**kwargs), WorldModelEnv("tiny", **kwargs)
    seen: list[int] = []

    def record(module, args):
        seen.append(args[0].shape[0])  # x (B, slots, d)

    envs.reset(seed=0)
    single.reset(seed=0)
    hooks = [e.model.net.deep.layers[0].register_forward_pre_hook(record) for e in (envs, single)]
    single.step(0)
    single_calls, seen[:] = len(seen), []
    envs.step(np.array([0, 1, 2]))
    for h in hooks:
        h.remove()
    assert single_calls >= 1 and len(seen) == single_calls and set(seen) == {3}


def test_autoreset_next_step_after_truncation():
    envs = make_vec(max_episode_steps=2)
    envs.reset(seed=0)
    actions = np.array([0, 1, 2])
    assert not envs.step(actions)[3].any()
    first = envs.step(actions)
    assert first[3].all()  # truncated at max_episode_steps
    obs, rewards, terminated, truncated, info = envs.step(actions)  # NEXT_STEP: this step resets them
    assert not rewards.any() and not terminated.any() and not truncated.any()
    assert "log_prob" not in info and info["_world_seed"].all()
    for i in range(3):
        assert np.array_equal(obs[i], world_frame(16, 16, int(info["world_seed"][i]))[0])
    assert not envs.step(actions)[3].any()  # a new episode: step 1 of 2


def test_partial_reset_reanchors_only_the_masked_sub_env():
    envs = make_vec(max_episode_steps=2)
    envs.reset(seed=0)
    actions = np.array([0, 1, 2])
    envs.step(actions)
    obs, info = envs.reset(options={"reset_mask": np.array([True, False, False])})
    assert np.array_equal(obs[0], world_frame(16, 16, int(info["world_seed"][0]))[0])
    assert list(info["_world_seed"]) == [True, False, False]
    _, _, _, truncated, _ = envs.step(actions)
    assert list(truncated) == [False, True, True]
    obs, rewards, _, truncated, info = envs.step(actions)  # 1 and 2 autoreset; 0 keeps going and truncates
    assert list(truncated) == [True, False, False] and list(info["_log_prob"]) == [True, False, False]
    assert list(info["_world_seed"]) == [False, True, True] and rewards[1:].tolist() == [0.0, 0.0]
    with pytest.raises(ConfigError, match="reset_mask"):
        envs.reset(options={"reset_mask": np.array([1, 0, 0])})


def test_vector_env_is_deterministic_given_a_seed():
    def rollout(seed: int) -> list:
        envs = make_vec(max_episode_steps=2, action_mode="text")
        out = [envs.reset(seed=seed)]
        envs.action_space.seed(seed)
        out += [envs.step(envs.action_space.sample()) for _ in range(4)]  # crosses an autoreset
        envs.close()
        return out

    a, b = rollout(5), rollout(5)
    for x, y in zip(a, b, strict=True):
        assert gym.utils.env_checker.data_equivalence(x, y, exact=True)
    assert not np.array_equal(a[0][0], rollout(6)[0][0])


def test_vector_reset_options():
    envs = make_vec()
    frames = np.random.default_rng(0).integers(0, 256, (3, 2, 16, 16, 3), dtype=np.uint8)
    obs, _ = envs.reset(seed=0, options={"frames": frames, "actions": [["stay"], ["move up"], ["stay"]]})
    assert np.array_equal(obs, frames[:, -1])
    obs, info = envs.reset(seed=0, options={"world_seed": 10})
    assert info["world_seed"].tolist() == [10, 11, 12]
    obs, _ = envs.reset(seed=0, options={"prompt": ["a", "b", "c"]})
    assert obs.shape == (3, 16, 16, 3)
    with pytest.raises(ConfigError, match="2 seeds for num_envs=3"):
        envs.reset(options={"world_seed": [1, 2]})


@pytest.mark.parametrize("source", ["frames", "prompt"])
def test_autoreset_starts_again_from_the_same_source(source):
    envs = make_vec(max_episode_steps=1)
    frames = np.random.default_rng(1).integers(0, 256, (3, 2, 16, 16, 3), dtype=np.uint8)
    options = {"frames": frames} if source == "frames" else {"prompt": "a block in the centre"}
    envs.reset(seed=0, options=options)
    assert envs.step(np.array([0, 0, 0]))[3].all()
    obs, rewards, terminated, truncated, info = envs.step(np.array([0, 0, 0]))
    assert not (rewards.any() or terminated.any() or truncated.any()) and "world_seed" not in info
    if source == "frames":
        assert np.array_equal(obs, frames[:, -1])
    assert envs.step(np.array([1, 1, 1]))[0].shape == (3, 16, 16, 3)


def test_terminated_sub_envs_autoreset_alone(tiny):
    # The conftest `tiny` model has random (non-zero) heads, so sub-envs terminate at different steps.
    envs = WorldModelVectorEnv(4, model=tiny)
    envs.reset(seed=0)
    done, ended = np.zeros(4, np.bool_), 0
    for _ in range(6):
        obs, rewards, terminated, truncated, info = envs.step(np.array([0, 1, 2, 3]))
        assert info.get("_world_seed", np.zeros(4, np.bool_)).tolist() == done.tolist()
        assert info.get("_log_prob", np.zeros(4, np.bool_)).tolist() == (~done).tolist()
        assert not (rewards[done].any() or terminated[done].any())
        for i in np.flatnonzero(done):
            assert np.array_equal(obs[i], world_frame(16, 16, int(info["world_seed"][i]))[0])
        done, ended = terminated | truncated, ended + int(terminated.sum())
    assert 0 < ended


def test_a_vector_env_of_one_sub_env_keeps_its_batch_axis():
    envs = gym.make_vec(ENV_ID, num_envs=1, vectorization_mode="vector_entry_point", model="tiny",
                        max_episode_steps=2)
    frames, _ = envs.reset(seed=0)
    assert frames.shape == (1, 16, 16, 3)
    for _ in range(3):  # crosses an autoreset
        frames, rewards, terminated, truncated, info = envs.step(np.array([1]))
        assert frames.shape == (1, 16, 16, 3) and rewards.shape == terminated.shape == (1,)
    envs.close()
