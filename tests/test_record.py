"""Recording Gymnasium envs into datasets, the data policies, and importing a folder of videos."""

from __future__ import annotations

import json

import cv2
import gymnasium as gym
import numpy as np
import pytest

from worldsim.cli import RECORD_POLICIES
from worldsim.config import PUSHWORLD_ACTIONS
from worldsim.dataset import Dataset
from worldsim.envs import PushWorld
from worldsim.errors import DatasetError, WorldSimError
from worldsim.record import POLICIES, PushWorldPolicy, import_videos, record_dataset, seek_action


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


def test_pushworld_policy_covers_pushing_walls_successes_and_idling():
    env = gym.make("worldsim/PushWorld-v0")
    policy, rng = PushWorldPolicy(), np.random.default_rng(0)
    seen = {"success": 0, "block_moved": 0, "wall_contact": 0, "idle": 0}
    for episode in range(30):
        obs, info = env.reset(seed=episode)
        policy.reset()
        for _ in range(100):
            obs, _, terminated, truncated, info = env.step(policy(env, obs, info, rng))
            for key in ("success", "block_moved", "wall_contact"):
                seen[key] += info[key]
            seen["idle"] += info["action_text"] == "stay"
            if terminated or truncated:
                break
    assert seen["success"] >= 6, seen  # the goal-seeking part succeeds on a good share of episodes
    assert min(seen.values()) > 0, seen


def test_pushworld_policy_speaks_text_mode():
    env = PushWorld(action_mode="text")
    obs, info = env.reset(seed=0)
    policy, rng = PushWorldPolicy(), np.random.default_rng(0)
    for _ in range(20):
        action = policy(env, obs, info, rng)
        assert action in PUSHWORLD_ACTIONS
        obs, _, _, _, info = env.step(action)


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


def test_record_cartpole(tmp_path):
    pytest.importorskip("pygame", reason="CartPole renders with pygame")
    ds = Dataset(record_dataset("CartPole-v1", 3, tmp_path / "ds", max_steps=5, progress=False))
    assert ds.frame_size == (400, 600) and ds.vocabulary == ["action 0", "action 1"]
    assert all(set(ep.actions) <= {"action 0", "action 1"} and len(ep.frames) <= 6 for ep in ds)


def test_record_errors(tmp_path):
    with pytest.raises(WorldSimError, match="unknown policy 'pushwrld'. Did you mean 'pushworld'"):
        record_dataset("worldsim/PushWorld-v0", 1, tmp_path / "a", policy="pushwrld", progress=False)
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


def _pressed_share(policy: PushWorldPolicy, episodes: int = 20) -> float:
    """Share of steps with the block against a wall and the agent touching it."""
    env = PushWorld()
    rng, pressed, steps = np.random.default_rng(0), 0, 0
    for episode in range(episodes):
        obs, info = env.reset(seed=episode)
        policy.reset()
        for _ in range(120):
            obs, _, terminated, _, info = env.step(policy(env, obs, info, rng))
            w = env.unwrapped
            at_wall = (w.block - w.block_half <= w.lo + 0.5).any() or (w.block + w.block_half >= w.hi - 0.5).any()
            touching = np.abs(w.agent - w.block).max() <= w.block_half + w.agent_radius + 1.0
            pressed += bool(at_wall and touching)
            steps += 1
            if terminated:
                break
    return pressed / steps


def test_press_segments_push_the_block_into_walls_and_hold_it_there():
    plain, walls = _pressed_share(PushWorldPolicy()), _pressed_share(PushWorldPolicy(press=0.2))
    assert walls > 3 * plain and walls > 0.03, (plain, walls)


def _off_centre_pushes(policy: PushWorldPolicy, episodes: int = 30) -> tuple[int, int]:
    """(pushes, pushes with the agent more than 3 px off the block's centre line) over some episodes."""
    env = PushWorld(action_mode="text")
    rng, pushes, off = np.random.default_rng(0), 0, 0
    for episode in range(episodes):
        obs, info = env.reset(seed=episode)
        policy.reset()
        for _ in range(120):
            before = env.block.copy()
            obs, _, terminated, _, info = env.step(policy(env, obs, info, rng))
            # a push, not a slide: the block moved a full push (3.3 px) this step
            if np.isclose(np.abs(env.block - before).max(), env.agent_step * env.push_gain):
                axis = int(np.argmax(np.abs(env.block - before)))
                pushes += 1
                off += abs(env.agent[1 - axis] - env.block[1 - axis]) > 3.0
            if terminated:
                break
    return pushes, off


def test_clip_segments_push_the_block_off_its_centre_line():
    (plain, plain_off), (clips, clips_off) = _off_centre_pushes(PushWorldPolicy()), \
        _off_centre_pushes(PushWorldPolicy(clip=0.3))
    assert clips_off > 2 * plain_off and clips_off / clips > plain_off / plain, (plain, plain_off, clips, clips_off)


def test_press_share_is_checked_and_the_cli_offers_every_policy(tmp_path):
    with pytest.raises(WorldSimError, match="press"):
        PushWorldPolicy(press=1.0)
    with pytest.raises(WorldSimError, match="together below 1; got press=0.5, clip=0.5"):
        PushWorldPolicy(press=0.5, clip=0.5)
    assert sorted(POLICIES) == RECORD_POLICIES
    ds = Dataset(record_dataset("worldsim/PushWorld-v0", 2, tmp_path / "w", policy="pushworld-walls", max_steps=6,
                                progress=False))
    assert ds.manifest["source"]["policy"] == "pushworld-walls" and len(ds) == 2
