"""Recording Gymnasium envs (Discrete actions as text, Box actions as vectors) into datasets, and importing a folder
of videos with text or numeric actions."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import gymnasium as gym
import numpy as np
import pytest

from worldsim.actions import ActionSpec
from worldsim.dataset import Dataset
from worldsim.envs import PushWorld
from worldsim.envs.pushworld import PUSHWORLD_ACTIONS
from worldsim.envs.pushworld_policies import seek_action
from worldsim.errors import DatasetError, WorldSimError
from worldsim.record import RandomPolicy, action_spec_for, record_dataset
from worldsim.video import import_videos


class Lamp(gym.Env):
    """A tiny real env with a Discrete(3) action space and no action names: a lamp of 3 brightnesses."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        self.action_space = gym.spaces.Discrete(3)
        self.observation_space = gym.spaces.Discrete(3)
        self.level = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.level = int(self.np_random.integers(3))
        return self.level, {}

    def step(self, action):
        self.level = int(action)
        return self.level, float(action), False, False, {}

    def render(self):
        return np.full((12, 10, 3), 100 * self.level, np.uint8)


def test_record_pushworld_round_trip(tmp_path):
    path = record_dataset("worldsim/PushWorld-v0", 3, tmp_path / "a", seed=4, max_steps=8, progress=False)
    ds = Dataset(path)
    assert len(ds) == 3 and ds.frame_size == (64, 64) and ds.fps == 16
    assert ds.vocabulary == list(PUSHWORLD_ACTIONS)
    assert ds.manifest["source"]["policy"] == "pushworld"
    env = PushWorld(render_mode="rgb_array")
    for i, ep in enumerate(ds):
        assert ep.frames.shape[1:] == (64, 64, 3) and len(ep.actions) == len(ep.frames) - 1 <= 8
        assert set(ep.actions) <= set(PUSHWORLD_ACTIONS)
        obs, info = env.reset(seed=4 + i)  # episode i starts from seed + i
        assert np.array_equal(ep.frames[0], obs) and ep.caption == info["caption"]
        for t, phrase in enumerate(ep.actions):  # replaying the phrases reproduces the frames
            obs = env.step(PUSHWORLD_ACTIONS.index(phrase))[0]
            assert np.array_equal(ep.frames[t + 1], obs)
    again = Dataset(record_dataset("worldsim/PushWorld-v0", 3, tmp_path / "b", seed=4, max_steps=8,
                                   progress=False))
    for x, y in zip(ds, again, strict=True):
        assert np.array_equal(x.frames, y.frames) and x.actions == y.actions


def test_record_env_instance_with_text_actions_and_callable_policy(tmp_path):
    env = PushWorld(render_mode="rgb_array", action_mode="text")
    always_left = lambda env, obs, info, rng: "move left"
    ds = Dataset(record_dataset(env, 2, tmp_path / "ds", policy=always_left, max_steps=4, progress=False))
    assert [ep.actions for ep in ds] == [["move left"] * 4] * 2
    assert ds.manifest["source"]["env_id"] == "PushWorld"


def test_after_end_keeps_recording_past_a_success(tmp_path):
    expert = lambda env, obs, info, rng: seek_action(env.unwrapped, rng)
    ended = 0
    for seed in range(4):  # one episode per dataset: the policy's rng then lines up in both recordings
        kw = dict(policy=expert, seed=seed, progress=False)
        p = Dataset(record_dataset("worldsim/PushWorld-v0", 1, tmp_path / f"p{seed}", **kw)).episode(0)
        more = Dataset(record_dataset("worldsim/PushWorld-v0", 1, tmp_path / f"m{seed}", after_end=6, **kw))
        m, n = more.episode(0), len(p.actions)
        assert more.manifest["source"]["after_end"] == 6
        assert np.array_equal(m.frames[: n + 1], p.frames) and m.actions[:n] == p.actions  # the same until the end
        if p.terminated[-1]:  # a success: six more steps, the block still on its goal at first
            ended += 1
            assert len(m.actions) == min(n + 6, 200) and m.terminated[n - 1] and m.terminated[n]
        else:  # the time limit: nothing to add
            assert len(m.actions) == n
    assert ended >= 2
    with pytest.raises(WorldSimError, match="after_end must be an int >= 0"):
        record_dataset("worldsim/PushWorld-v0", 1, tmp_path / "c", after_end=-1, progress=False)


def test_discrete_env_without_names_gets_action_i(tmp_path):
    ds = Dataset(record_dataset(Lamp(render_mode="rgb_array"), 3, tmp_path / "a", max_steps=5,
                                progress=False))
    assert ds.vocabulary == ["action 0", "action 1", "action 2"] and ds.fps == 10
    ep = ds.episode(0)
    assert ep.frames.shape == (6, 12, 10, 3) and len(ep.actions) == 5
    for t, phrase in enumerate(ep.actions):
        assert ep.frames[t + 1, 0, 0, 0] == 100 * int(phrase.split()[1])
        assert ep.rewards[t] == float(phrase.split()[1])
    names = ["off", "dim", "bright"]
    named = Dataset(record_dataset(Lamp(render_mode="rgb_array"), 1, tmp_path / "b", max_steps=5,
                                   progress=False, action_texts=names))
    assert named.vocabulary == names and set(named.episode(0).actions) <= set(names)


def worldsim(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "worldsim.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_record_box_env_from_gymnasium_through_the_cli(tmp_path):
    pytest.importorskip("pygame", reason="classic-control envs render with pygame (the dev extra installs it)")
    proc = worldsim("record", "--env", "Pendulum-v1", "--episodes", "2", "--max-steps", "6", "--size", "16",
                    "--seed", "3", "--out", str(tmp_path / "ds"))
    assert proc.returncode == 0, proc.stderr
    assert "actions: vector, d=1, bounds [-2, 2]" in proc.stdout
    ds = Dataset(tmp_path / "ds")
    assert ds.action_spec == ActionSpec.vector([-2.0], [2.0]) and ds.frame_size == (16, 16) and ds.fps == 30
    assert ds.manifest["source"]["policy"] == "random" and ds.manifest["source"]["size"] == 16
    for ep in ds:
        assert ep.frames.shape == (7, 16, 16, 3) and ep.actions.shape == (6, 1) and ep.actions.dtype == np.float32
        assert np.all(np.abs(ep.actions) <= 2.0)
    again = Dataset(record_dataset("Pendulum-v1", 2, tmp_path / "again", max_steps=6, size=16, seed=3,
                                   progress=False))  # seeded: the same actions and frames in process
    for x, y in zip(ds, again, strict=True):
        assert np.array_equal(x.actions, y.actions) and np.array_equal(x.frames, y.frames)
    env = gym.make("Pendulum-v1")  # replaying the stored actions reproduces the rewards
    env.reset(seed=3)
    first = ds.episode(0)
    assert [env.step(a)[1] for a in first.actions] == pytest.approx(first.rewards.tolist(), rel=1e-5)


def test_record_discrete_env_from_gymnasium_through_the_cli(tmp_path):
    pytest.importorskip("pygame", reason="classic-control envs render with pygame (the dev extra installs it)")
    proc = worldsim("record", "--env", "CartPole-v1", "--episodes", "2", "--max-steps", "5", "--size", "16",
                    "--out", str(tmp_path / "ds"))
    assert proc.returncode == 0, proc.stderr
    ds = Dataset(tmp_path / "ds")
    assert ds.action_spec == ActionSpec.text(["action 0", "action 1"]) and ds.frame_size == (16, 16)
    assert ds.fps == 50 and not ds.is_vector
    assert all(set(ep.actions) <= {"action 0", "action 1"} and ep.frames.shape[1:] == (16, 16, 3) for ep in ds)
    bad = worldsim("record", "--env", "CartPole-v1", "--episodes", "1", "--policy", "pushworld",
                   "--out", str(tmp_path / "bad"))
    assert bad.returncode == 1 and "unknown policy 'pushworld' for CartPole-v1 (it is a policy of the world " \
        "'pushworld'" in bad.stderr and "['random']" in bad.stderr


class Drift(gym.Env):
    """A tiny real env with Box actions: a grey level that the 2-d action nudges; bounded or not."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, render_mode: str | None = None, bounded: bool = True, shape: tuple[int, ...] = (2,)):
        self.render_mode = render_mode
        limit = 1.0 if bounded else np.inf
        self.action_space = gym.spaces.Box(-limit, limit, shape, np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.level = 0.5

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.level = float(self.np_random.uniform())
        return np.array([self.level], np.float32), {}

    def step(self, action):
        self.level = float(np.clip(self.level + 0.1 * np.sum(action), 0.0, 1.0))
        return np.array([self.level], np.float32), 0.0, False, False, {}

    def render(self):
        return np.full((8, 8, 3), round(255 * self.level), np.uint8)


def test_unbounded_box_needs_action_bounds(tmp_path):
    env = Drift(render_mode="rgb_array", bounded=False)
    with pytest.raises(WorldSimError, match=r"infinite bounds .* Fix: pass --action-low and --action-high"):
        record_dataset(env, 1, tmp_path / "a", max_steps=3, progress=False)
    ds = Dataset(record_dataset(env, 2, tmp_path / "b", max_steps=5, progress=False, action_low=-0.5,
                                action_high=[0.5, 0.25]))
    assert ds.action_spec == ActionSpec.vector([-0.5, -0.5], [0.5, 0.25])
    for ep in ds:
        assert ep.actions.shape == (5, 2) and np.all(ep.actions >= -0.5) and np.all(ep.actions[:, 1] <= 0.25)
    with pytest.raises(WorldSimError, match=r"one value for all 2 components or 2 values; received \[0.0, 1.0, 2.0\]"):
        record_dataset(env, 1, tmp_path / "c", action_low=[0, 1, 2], action_high=3, progress=False)
    with pytest.raises(WorldSimError, match="bound Box actions; Lamp has a Discrete action space"):
        record_dataset(Lamp(render_mode="rgb_array"), 1, tmp_path / "d", action_low=0, progress=False)


def test_policy_leaving_the_bounds_is_a_dataset_error(tmp_path):
    too_far = lambda env, obs, info, rng: np.array([0.5, 3.0], np.float32)
    with pytest.raises(DatasetError, match=r"action at step 0 is \[0.5, 3.0\]: component 1 = 3 is outside"):
        record_dataset(Drift(render_mode="rgb_array"), 1, tmp_path / "a", policy=too_far, max_steps=3,
                       progress=False)


def test_action_spaces_record_as_text_or_vectors_or_a_named_error():
    assert action_spec_for(Drift()) == ActionSpec.vector([-1.0, -1.0], [1.0, 1.0])
    assert action_spec_for(Lamp()) == ActionSpec.text(["action 0", "action 1", "action 2"])
    assert action_spec_for(PushWorld(action_mode="text")) == ActionSpec.text(PUSHWORLD_ACTIONS)
    with pytest.raises(WorldSimError, match=r"Box action space of shape \(2, 2\); worldsim records vector"):
        action_spec_for(Drift(shape=(2, 2)))
    lamp = Lamp()
    lamp.action_space = gym.spaces.MultiDiscrete([2, 3])
    with pytest.raises(WorldSimError, match="Lamp has a MultiDiscrete action space; worldsim records Discrete"):
        action_spec_for(lamp)


class Arcade(Lamp):
    """A Discrete env that names its actions as Atari envs do."""

    def get_action_meanings(self):
        return ["NOOP", "FIRE", "UP"]


def test_discrete_env_with_action_meanings_records_them(tmp_path):
    ds = Dataset(record_dataset(Arcade(render_mode="rgb_array"), 2, tmp_path / "ds", max_steps=6, progress=False))
    assert ds.vocabulary == ["NOOP", "FIRE", "UP"]
    for ep in ds:
        for t, phrase in enumerate(ep.actions):
            assert ep.rewards[t] == ["NOOP", "FIRE", "UP"].index(phrase)


def test_random_policy_samples_a_box_with_the_given_rng():
    env = Drift()
    draws = [RandomPolicy()(env, None, {}, np.random.default_rng(5)) for _ in range(2)]
    assert np.array_equal(*draws) and draws[0].shape == (2,) and draws[0].dtype == np.float32
    narrow = RandomPolicy([0.0, 0.0], [0.1, 0.1])(env, None, {}, np.random.default_rng(5))
    assert np.all((narrow >= 0) & (narrow <= 0.1))
    with pytest.raises(WorldSimError, match="unbounded; give it bounds"):
        RandomPolicy()(Drift(bounded=False), None, {}, np.random.default_rng(0))


def test_record_errors(tmp_path):
    with pytest.raises(WorldSimError, match="unknown policy 'pushwrld' for worldsim/PushWorld-v0. Did you mean "
                                            "'pushworld'"):
        record_dataset("worldsim/PushWorld-v0", 1, tmp_path / "a", policy="pushwrld", progress=False)
    with pytest.raises(WorldSimError, match="could not make the env 'NoSuchEnv-v0'"):
        record_dataset("NoSuchEnv-v0", 1, tmp_path / "e", progress=False)
    with pytest.raises(WorldSimError, match="render_mode=None.*render_mode='rgb_array'"):
        record_dataset(PushWorld(), 1, tmp_path / "b", progress=False)
    with pytest.raises(WorldSimError, match="episodes >= 1"):
        record_dataset("worldsim/PushWorld-v0", 0, tmp_path / "c", progress=False)


def write_video(path, frames: np.ndarray, fps: float = 8.0) -> None:
    """frames: (T, H, W, 3) uint8 RGB → an mp4 file."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()


def colour_clip(t: int, colour) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (t, 32, 32, 3)).copy()


@pytest.fixture
def videos(tmp_path):
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "red.mp4", colour_clip(6, (200, 40, 40)))
    write_video(folder / "blue.mp4", colour_clip(4, (40, 40, 200)))
    lines = [{"video": "red.mp4", "actions": ["move left"] * 5, "caption": "a red room"},
             {"video": "blue.mp4", "actions": ["stay", "move up", "stay"], "caption": "a blue room"}]
    (tmp_path / "actions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return folder, tmp_path / "actions.jsonl"


def test_import_videos_round_trip(videos, tmp_path):
    folder, jsonl = videos
    ds = Dataset(import_videos(folder, jsonl, tmp_path / "ds"))
    assert len(ds) == 2 and ds.frame_size == (32, 32) and ds.fps == pytest.approx(8.0)
    assert ds.vocabulary == ["move left", "stay", "move up"]
    red, blue = ds.episode(0), ds.episode(1)
    assert red.frames.shape == (6, 32, 32, 3) and blue.frames.shape == (4, 32, 32, 3)
    assert np.abs(red.frames.mean(axis=(0, 1, 2)) - (200, 40, 40)).max() < 12  # RGB order, lossy codec
    assert np.abs(blue.frames.mean(axis=(0, 1, 2)) - (40, 40, 200)).max() < 12
    assert red.actions == ["move left"] * 5 and blue.caption == "a blue room"
    small = Dataset(import_videos(folder, jsonl, tmp_path / "small", size=16))
    assert small.frame_size == (16, 16) and small.episode(0).frames.shape == (6, 16, 16, 3)


def test_import_videos_action_count_mismatch(videos, tmp_path):
    folder, jsonl = videos
    jsonl.write_text(jsonl.read_text().replace('["stay", "move up", "stay"]', '["stay"]'))
    with pytest.raises(DatasetError, match=r"blue\.mp4 has 4 frames, so it needs 3 actions .* line has 1"):
        import_videos(folder, jsonl, tmp_path / "ds")


def test_import_videos_unmatched_files_and_bad_lines(videos, tmp_path):
    folder, jsonl = videos
    write_video(folder / "green.mp4", colour_clip(3, (40, 200, 40)))
    with pytest.raises(DatasetError, match=r"\['green\.mp4'\] .* have no line in"):
        import_videos(folder, jsonl, tmp_path / "ds")
    (folder / "green.mp4").unlink()
    (folder / "red.mp4").unlink()
    with pytest.raises(DatasetError, match=r"names video\(s\) \['red\.mp4'\] that are not in"):
        import_videos(folder, jsonl, tmp_path / "ds")
    jsonl.write_text('{"video": "blue.mp4", "actions": []}\nnot json\n')
    with pytest.raises(DatasetError, match=r"actions\.jsonl:2: not valid JSON"):
        import_videos(folder, jsonl, tmp_path / "ds")




def test_import_videos_with_numeric_actions(videos, tmp_path, caplog):
    folder, jsonl = videos
    lines = [{"video": "red.mp4", "actions": [[0.1 * t, -0.3] for t in range(5)]},
             {"video": "blue.mp4", "actions": [[-0.2, -0.3], [0.0, -0.3], [0.25, -0.3]]}]
    jsonl.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with caplog.at_level("INFO", logger="worldsim.video"):
        ds = Dataset(import_videos(folder, jsonl, tmp_path / "data"))
    assert "bounds are the data's min/max" in caplog.text
    # the constant second component gets a unit margin either side: bounds need low < high
    assert ds.action_spec == ActionSpec.vector([-0.2, -1.3], [0.4, 0.7])
    assert ds.manifest["source"]["action_bounds"]["from"] == "data"
    red = ds.episode(0)
    assert red.actions.dtype == np.float32 and np.allclose(red.actions, lines[0]["actions"])
    proc = worldsim("record", "--import-videos", str(folder), "--actions", str(jsonl), "--size", "16",
                    "--action-low", "-1", "--action-high", "1", "--out", str(tmp_path / "given"))
    assert proc.returncode == 0, proc.stderr
    given = Dataset(tmp_path / "given")
    assert given.action_spec == ActionSpec.vector([-1.0, -1.0], [1.0, 1.0]) and given.frame_size == (16, 16)
    assert given.manifest["source"]["action_bounds"] == {"from": "given", "low": [-1.0, -1.0], "high": [1.0, 1.0]}
    narrow = r"red\.mp4: episode ep_000000\.npz: the action at step 0 is \[0\.0, -0\.3\]: component 1 = -0\.3"
    with pytest.raises(DatasetError, match=narrow + r" is outside its bounds \[-0\.1, 0\.1\]"):
        import_videos(folder, jsonl, tmp_path / "narrow", action_low=-0.1, action_high=0.1)


def test_import_videos_refuses_mixed_or_odd_actions(videos, tmp_path):
    folder, jsonl = videos
    mixed = [{"video": "red.mp4", "actions": [[0.1], [0.2], [0.3], [0.4], [0.5]]},
             {"video": "blue.mp4", "actions": ["stay", [0.1], "stay"]}]
    jsonl.write_text("\n".join(json.dumps(x) for x in mixed) + "\n")
    with pytest.raises(DatasetError, match=r"video blue\.mp4, step 0: a text action, but video red\.mp4 step 0 "
                                           r"holds a vector one"):
        import_videos(folder, jsonl, tmp_path / "a")
    mixed[1]["actions"] = [[0.1, 0.2], [0.1], [0.1]]
    jsonl.write_text("\n".join(json.dumps(x) for x in mixed) + "\n")
    with pytest.raises(DatasetError, match="a numeric action of 2 values, but earlier ones have 1"):
        import_videos(folder, jsonl, tmp_path / "b")
    mixed[1]["actions"] = [0.1, 0.2, 0.3]
    jsonl.write_text("\n".join(json.dumps(x) for x in mixed) + "\n")
    with pytest.raises(DatasetError, match=r"action 0\.1 is neither a phrase nor a list of numbers.*\[0\.5\]"):
        import_videos(folder, jsonl, tmp_path / "c")
    text = [{"video": "red.mp4", "actions": ["stay"] * 5}, {"video": "blue.mp4", "actions": ["stay"] * 3}]
    jsonl.write_text("\n".join(json.dumps(x) for x in text) + "\n")
    with pytest.raises(DatasetError, match="bound numeric actions; .* has text actions"):
        import_videos(folder, jsonl, tmp_path / "d", action_high=1.0)
