"""PushWorld: dynamics, determinism, the Gymnasium contract, text actions, object detection, its data policies."""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from worldsim.dataset import Dataset
from worldsim.envs import PushWorld
from worldsim.envs.pushworld import PUSHWORLD_ACTIONS, detect_objects
from worldsim.envs.pushworld_policies import POLICIES, PushWorldPolicy, seek_action
from worldsim.errors import InvalidAction, WorldSimError
from worldsim.record import record_dataset
from worldsim.worlds import get

UP, DOWN, LEFT, RIGHT, STAY = range(5)
FAR_GOAL = (50.0, 50.0)


def placed(agent, block, goal=FAR_GOAL, **kwargs) -> PushWorld:
    env = PushWorld(render_mode="rgb_array", **kwargs)
    env.reset(seed=0, options={"agent_pos": agent, "block_pos": block, "goal_pos": goal})
    return env


@pytest.mark.parametrize("action, delta", [(UP, (0, -3)), (DOWN, (0, 3)), (LEFT, (-3, 0)), (RIGHT, (3, 0)),
                                           (STAY, (0, 0))])
def test_agent_moves_the_commanded_direction_by_one_step(action, delta):
    env = placed(agent=(32, 32), block=(12, 12))
    _, _, _, truncated, info = env.step(action)
    assert np.allclose(info["agent_pos"], (32 + delta[0], 32 + delta[1]))
    assert info["action_text"] == PUSHWORLD_ACTIONS[action]
    assert not info["block_moved"] and not info["wall_contact"] and not truncated


def test_walls_stop_the_agent():
    env = placed(agent=(12, 32), block=(40, 40))
    for _ in range(5):
        _, _, _, _, info = env.step(LEFT)
    assert info["agent_pos"][0] == pytest.approx(env.lo + env.agent_radius)
    assert info["wall_contact"]


def test_pushing_moves_the_block_then_friction_stops_it():
    env = placed(agent=(20, 32), block=(29, 32))  # agent just left of the block
    _, _, _, _, info = env.step(RIGHT)
    assert info["block_moved"]
    assert info["block_pos"][0] == pytest.approx(29 + 3 * env.push_gain)
    assert info["block_pos"][1] == pytest.approx(32)
    assert info["agent_pos"][0] <= info["block_pos"][0] - env.block_half - env.agent_radius + 1e-6
    xs = [info["block_pos"][0]]
    for _ in range(40):
        _, _, _, _, info = env.step(STAY)
        xs.append(info["block_pos"][0])
    moves = np.diff(xs)
    sliding = moves[moves > 0]
    assert len(sliding) >= 3 and np.all(np.diff(sliding) < 0)  # slides on, slower every step
    assert moves[-1] == 0 and not info["block_moved"] and np.all(env.block_vel == 0)


def test_block_bounces_off_walls_with_damping():
    env = placed(agent=(20, 20), block=(53, 32))
    env.block_vel = np.array([4.0, 0.0])
    _, _, _, _, info = env.step(STAY)
    assert info["block_pos"][0] == pytest.approx(env.hi - env.block_half)
    assert info["wall_contact"]
    assert env.block_vel[0] == pytest.approx(-4.0 * 0.5 * env.friction)
    _, _, _, _, info = env.step(STAY)
    assert info["block_pos"][0] < env.hi - env.block_half


def test_block_stops_at_walls_without_restitution():
    env = placed(agent=(20, 20), block=(53, 32), restitution=0.0)
    env.block_vel = np.array([4.0, 0.0])
    env.step(STAY)
    _, _, _, _, info = env.step(STAY)
    assert info["block_pos"][0] == pytest.approx(env.hi - env.block_half)
    assert not info["block_moved"]


def test_block_pushed_into_a_wall_stays_in_the_room():
    env = placed(agent=(40, 32), block=(49, 32))
    for _ in range(10):
        _, _, _, _, info = env.step(RIGHT)
        assert env.lo + env.block_half <= info["block_pos"][0] <= env.hi - env.block_half
        gap = info["block_pos"][0] - info["agent_pos"][0]
        assert gap >= env.block_half + env.agent_radius - 1e-6


def test_success_terminates_with_reward():
    env = placed(agent=(20, 32), block=(29, 32), goal=(45, 32))
    _, reward, terminated, _, info = env.step(RIGHT)
    assert (reward, terminated, info["success"]) == (pytest.approx(-0.01), False, False)
    for _ in range(30):
        _, reward, terminated, _, info = env.step(STAY)
        if terminated:
            break
    assert terminated and info["success"] and reward == 1.0
    assert np.hypot(*np.subtract(info["block_pos"], info["goal_pos"])) <= env.success_radius


def rollout(seed: int, steps: int = 12) -> tuple[list[np.ndarray], str]:
    env = PushWorld(render_mode="rgb_array")
    obs, info = env.reset(seed=seed)
    frames = [obs]
    for t in range(steps):
        frames.append(env.step((t * 7 + seed) % 5)[0])
    return frames, info["caption"]


def test_same_seed_same_frames_and_caption_different_seeds_differ():
    a, caption_a = rollout(3)
    b, caption_b = rollout(3)
    assert caption_a == caption_b and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    others = [rollout(seed, steps=0) for seed in range(4, 9)]
    assert all(not np.array_equal(a[0], frames[0]) for frames, _ in others)
    assert len({caption for _, caption in others} | {caption_a}) > 1


def test_reset_info_caption_and_positions():
    env = PushWorld(render_mode="rgb_array")
    obs, info = env.reset(options={"agent_pos": (32, 32), "block_pos": (32, 10), "goal_pos": (10, 54)})
    assert info["caption"] == "block near the top wall, goal in the bottom-left corner, agent in the centre"
    assert env.caption == info["caption"]
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert env.positions() == {k: info[k] for k in ("agent_pos", "block_pos", "goal_pos")}
    assert np.array_equal(env.render(), obs)
    assert PushWorld().render() is None


def test_bad_reset_option_is_reported():
    with pytest.raises(ValueError, match="inside the room"):
        PushWorld().reset(options={"agent_pos": (0, 0)})
    with pytest.raises(ValueError, match="Did you mean 'agent_pos'"):
        PushWorld().reset(options={"agent_position": (30, 30)})


@pytest.mark.parametrize("action_mode", ["discrete", "text"])
def test_check_env(action_mode):
    check_env(PushWorld(render_mode="rgb_array", action_mode=action_mode))
    env = gym.make("worldsim/PushWorld-v0", render_mode="rgb_array", action_mode=action_mode)
    assert env.spec.max_episode_steps == 200
    check_env(env.unwrapped)


def test_text_mode_accepts_phrases_and_rejects_unknown_ones():
    env = PushWorld(action_mode="text")
    env.reset(seed=0)
    assert isinstance(env.action_space, gym.spaces.Text)
    assert env.action_space.contains("move left") and not env.action_space.contains("jump")
    _, _, _, _, info = env.step("move left")
    assert info["action_text"] == "move left"
    with pytest.raises(InvalidAction, match=r"unknown action 'move lef'\. Did you mean 'move left'\?.*stay"):
        env.step("move lef")
    with pytest.raises(InvalidAction, match="takes a phrase"):
        env.step(2)


def test_discrete_mode_is_strict():
    env = PushWorld()
    env.reset(seed=0)
    env.step(np.int64(1))
    with pytest.raises(InvalidAction, match="action_mode='text'"):
        env.step("move up")
    with pytest.raises(InvalidAction, match="out of range"):
        env.step(5)


def test_registered_env_has_a_time_limit():
    env = gym.make("worldsim/PushWorld-v0")
    env.reset(seed=0)
    truncated = False
    for _ in range(200):
        _, _, terminated, truncated, _ = env.step(STAY)
    assert truncated and not terminated


@pytest.mark.parametrize("size", [64, 128])
def test_detect_objects_finds_true_positions(size):
    env = PushWorld(render_mode="rgb_array", size=size)
    rng = np.random.default_rng(0)
    for seed in range(10):
        obs, info = env.reset(seed=seed)
        for _ in range(6):
            found = detect_objects(obs)
            for key in ("agent_pos", "block_pos"):
                assert np.abs(np.subtract(found[key], info[key])).max() <= 1.0
            obs, _, _, _, info = env.step(int(rng.integers(5)))


def test_detect_objects_tolerates_blur_and_noise_and_reports_missing():
    env = PushWorld(render_mode="rgb_array")
    obs, info = env.reset(seed=1)
    noisy = cv2.GaussianBlur(obs, (3, 3), 0.7).astype(np.float32)
    noisy += np.random.default_rng(0).normal(0, 6, obs.shape)
    found = detect_objects(np.clip(noisy, 0, 255).astype(np.uint8))
    for key in ("agent_pos", "block_pos"):
        assert np.abs(np.subtract(found[key], info[key])).max() <= 1.5
    empty = np.full_like(obs, 30)
    assert detect_objects(empty) == {"agent_pos": None, "block_pos": None}


def test_detect_objects_ignores_scattered_speckle_of_the_object_colours():
    from worldsim.envs.pushworld import AGENT_COLOUR, BLOCK_COLOUR

    rng = np.random.default_rng(0)
    frame = np.full((64, 64, 3), 30, np.uint8)
    for colour in (AGENT_COLOUR, BLOCK_COLOUR):  # 150 isolated pixels each: more than an object's area
        ys, xs = rng.integers(0, 32, 150) * 2, rng.integers(0, 32, 150) * 2
        frame[ys, xs] = colour
    assert detect_objects(frame) == {"agent_pos": None, "block_pos": None}


# -- data policies (envs/pushworld_policies.py) ------------------------------------------------


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


def test_press_share_is_checked_and_the_world_offers_every_policy(tmp_path):
    with pytest.raises(WorldSimError, match="press"):
        PushWorldPolicy(press=1.0)
    with pytest.raises(WorldSimError, match="together below 1; got press=0.5, clip=0.5"):
        PushWorldPolicy(press=0.5, clip=0.5)
    assert get("pushworld").policies is POLICIES and get("pushworld").default_policy == "pushworld"
    assert sorted(POLICIES) == ["pushworld", "pushworld-contacts", "pushworld-walls"]
    ds = Dataset(record_dataset("worldsim/PushWorld-v0", 2, tmp_path / "w", policy="pushworld-walls", max_steps=6,
                                progress=False))
    assert ds.manifest["source"]["policy"] == "pushworld-walls" and len(ds) == 2


def test_rest_is_where_step_leaves_a_block_pushed_along_one_axis():
    for speed in (3.3, -3.3, 6.0):
        env = placed(agent=(12, 50), block=(32, 32), goal=(50, 12))
        env.block_vel = np.array([speed, 0.0])
        predicted = env.rest(32.0, speed)
        for _ in range(60):
            env.step(STAY)
        assert env.block[0] == pytest.approx(predicted) and env.block[1] == 32
    assert seek_action(env, np.random.default_rng(0)) in range(5)
