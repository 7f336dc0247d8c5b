"""The PushT world plug-in: registry, the Gymnasium contract, exact state save/restore, frames, the pose detector on
real frames, the data policies' pushes (they turn the T), and recording through the CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip("gym_pusht", reason="the PushT world needs the pusht extra (the dev extra installs it)")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from worldsim.dataset import Dataset  # noqa: E402
from worldsim.envs.pusht.detector import detect_pose  # noqa: E402
from worldsim.envs.pusht.env import (  # noqa: E402
    ENV_ID,
    T_OUTLINE,
    PushTState,
    angle_error,
    make_env,
    physics_step,
    to_world,
)
from worldsim.envs.pusht.goals import coverage  # noqa: E402
from worldsim.envs.pusht.policies import POLICIES, PushTPolicy  # noqa: E402
from worldsim.errors import WorldSimError  # noqa: E402
from worldsim.worlds import get  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# The detector's error bounds on real frames (measured: docs/pusht.md). Position in env units (512 across the frame:
# 8 units per px at 64×64), angle in degrees.
BOUNDS = {64: {"mean_position": 3.0, "max_position": 12.0, "mean_angle": 3.0, "max_angle": 12.0, "max_agent": 3.0},
          96: {"mean_position": 3.0, "max_position": 10.0, "mean_angle": 3.0, "max_angle": 10.0, "max_agent": 2.0}}


def rollout(policy: str, seed: int, steps: int, size: int = 64):
    """(frames, infos) of the named data policy from reset seed `seed` (rng seeded alike)."""
    env = make_env(size)
    pol, rng = POLICIES[policy](), np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    frames, infos = [obs], [info]
    for _ in range(steps):
        obs, _, _, _, info = env.step(pol(env, obs, info, rng))
        frames.append(obs)
        infos.append(info)
    env.close()
    return frames, infos


def test_found_by_name_and_env_id():
    world = get("pusht")
    assert get(ENV_ID) is world and world.env_id == "gym_pusht/PushT-v0"
    assert world.default_policy in world.policies and {"pusht-push", "pusht-smooth", "pusht-walls"} <= set(
        world.policies)
    assert world.detector is detect_pose and world.goals is not None and world.goals.tasks == ("pairs", "native")


def test_the_registry_lists_pusht_without_gym_pusht_and_making_it_says_how_to_install():
    code = ("import sys; sys.modules['gym_pusht'] = None\n"  # as if the extra were not installed
            "from worldsim.worlds import get\n"
            "world = get('pusht')\n"
            "try:\n    world.make_env(size=64)\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=ENV)
    assert out.returncode == 0, out.stderr
    assert "WorldSimError" in out.stdout and 'pip install -e ".[pusht]"' in out.stdout


@pytest.mark.filterwarnings("ignore:.*(different from the unwrapped|symmetric and normalized):UserWarning")
def test_check_env_on_the_env_as_made():
    env = make_env(64)
    check_env(env)
    assert env.observation_space.shape == (64, 64, 3) and env.action_space.shape == (2,)
    assert env.render().shape == (64, 64, 3)


def test_text_actions_are_refused_with_the_fix():
    with pytest.raises(WorldSimError, match="vectors .* action_mode='vector' or None"):
        make_env(64, action_mode="text")


def test_same_seed_same_frames_and_frames_at_64_are_the_96_frames_area_averaged():
    a, _ = rollout("pusht", 3, 12)
    b, _ = rollout("pusht", 3, 12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    big, _ = rollout("pusht", 3, 12, size=96)
    assert all(np.array_equal(cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA), g)
               for f, g in zip(big, a, strict=True))  # what `worldsim record --size 64` makes of the 96 px renders


def test_restore_then_step_repeats_the_future_exactly_and_physics_step_matches_step():
    env = make_env(64)
    _, info = env.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(10):  # get the agent moving and touching the T
        env.step(np.asarray(info["block_pose"][:2]) + rng.normal(0, 40, 2))
    saved = env.state()
    actions = [np.clip(np.asarray(info["block_pose"][:2]) + rng.normal(0, 60, 2), 0, 512) for _ in range(30)]
    first = env.restore(saved)
    for a in actions:
        env.step(a)
    after = env.state()
    assert np.array_equal(env.restore(saved), first)
    for a in actions:
        physics_step(env.unwrapped, a)
    assert env.state() == after


def test_a_restored_state_is_the_pose_asked_for():
    env = make_env(64)
    env.reset(seed=0)
    state = PushTState((100.0, 420.0), (0.0, 0.0), (300.0, 250.0, 2.5), (0.0, 0.0), 0.0)
    env.restore(state)
    assert env.state() == state
    corners = env.unwrapped.get_keypoints(env.unwrapped._block_shapes)  # gym-pusht's own T corners
    ours = to_world(state.block, T_OUTLINE)
    assert max(min(np.hypot(*(c - o)) for o in ours) for c in corners) < 1e-6


def test_coverage_is_gym_pushts():
    env = make_env(64)
    env.reset(seed=1)
    for target in ((256, 256), (300, 200), (200, 320)):
        _, _, _, _, info = env.step(np.array(target, float))
        assert coverage(info["block_pose"], info["goal_pose"]) == pytest.approx(info["coverage"], abs=1e-9)


@pytest.mark.parametrize("size", [64, 96])
def test_the_detector_reads_pose_and_agent_from_real_frames_within_the_stated_bounds(size):
    pos, ang, agent = [], [], []
    for seed in range(4):  # 4 episodes × 16 frames, every 4th step of the default data policy
        frames, infos = rollout("pusht", 100 + seed, 64, size)
        for frame, info in list(zip(frames, infos, strict=True))[4::4]:
            found = detect_pose(frame)
            pose = info["block_pose"]
            pos.append(math.dist(found["block_pos"], pose[:2]))
            ang.append(math.degrees(angle_error(found["block_angle"], pose[2])))
            agent.append(math.dist(found["agent_pos"], info["pos_agent"]))
            assert 0 <= found["block_angle"] < 2 * math.pi
            assert np.allclose(found["block_px"], (np.array(found["block_pos"]) * size / 512) - 0.5)
    bound = BOUNDS[size]
    assert len(pos) >= 50
    assert np.mean(pos) < bound["mean_position"] and max(pos) < bound["max_position"], (np.mean(pos), max(pos))
    assert np.mean(ang) < bound["mean_angle"] and max(ang) < bound["max_angle"], (np.mean(ang), max(ang))
    assert max(agent) < bound["max_agent"]


@pytest.mark.parametrize("angle", [0.3, 1.9, 3.6, 5.2])
def test_the_angle_is_read_on_the_whole_circle(angle):
    env = make_env(64)
    env.reset(seed=0)
    seen = []
    for turn in (0.0, math.pi):  # the T turned half a circle looks different: its stem points the other way
        frame = env.restore(PushTState((60.0, 60.0), (0.0, 0.0), (256.0, 256.0, angle + turn), (0.0, 0.0), 0.0))
        seen.append(detect_pose(frame)["block_angle"])
    assert math.degrees(angle_error(seen[0], angle)) < 4
    assert math.degrees(angle_error(seen[1], angle + math.pi)) < 4


def test_nothing_found_on_an_empty_floor():
    found = detect_pose(np.full((64, 64, 3), 255, np.uint8))
    assert found["block_pos"] is None and found["block_angle"] is None and found["agent_pos"] is None
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        detect_pose(np.zeros((64, 64), np.uint8))


def test_the_policies_push_the_t_round_and_keep_it_in_the_arena():
    turning = moving = steps = 0
    for seed in range(3):
        _, infos = rollout("pusht", seed, 100)
        for before, after in zip(infos, infos[1:], strict=False):
            steps += 1
            turning += math.degrees(angle_error(after["block_pose"][2], before["block_pose"][2])) > 1.0
            moving += math.dist(after["block_pose"][:2], before["block_pose"][:2]) > 1.0
            corners = to_world(after["block_pose"], T_OUTLINE)
            assert corners.min() > 0 and corners.max() < 512  # never squeezed through a wall
    assert turning >= 0.1 * steps and turning >= 0.6 * moving, (turning, moving, steps)


def test_wall_presses_bring_the_t_or_the_agent_to_a_wall():
    _, infos = rollout("pusht-walls", 0, 120)
    near = [min(to_world(i["block_pose"], T_OUTLINE).min(), 512 - to_world(i["block_pose"], T_OUTLINE).max()) < 15
            or min(i["pos_agent"].min(), 512 - i["pos_agent"].max()) < 25 for i in infos]
    assert sum(near) >= 10


def test_a_policy_repeats_itself_after_reset_under_the_same_rng():
    env, pol = make_env(64), PushTPolicy()
    runs = []
    for _ in range(2):
        pol.reset()
        rng = np.random.default_rng(7)
        obs, info = env.reset(seed=7)
        actions = []
        for _ in range(30):
            actions.append(pol(env, obs, info, rng))
            obs, _, _, _, info = env.step(actions[-1])
        runs.append(np.stack(actions))
    assert runs[0].dtype == np.float32 and np.array_equal(runs[0], runs[1])
    assert runs[0].min() >= 0 and runs[0].max() <= 512
    with pytest.raises(WorldSimError, match="four values"):
        PushTPolicy((0.5, 0.5))


def test_record_through_the_cli(tmp_path):
    out = tmp_path / "pusht"
    proc = subprocess.run([sys.executable, "-m", "worldsim.cli", "record", "--env", ENV_ID, "--policy", "pusht",
                           "--episodes", "2", "--max-steps", "5", "--size", "64", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr
    data = Dataset(out)
    assert len(data) == 2 and data.frame_size == (64, 64) and data.episode_lengths == [6, 6]
    assert data.action_spec.is_vector and data.action_spec.dim == 2 and data.action_spec.high == (512.0, 512.0)


def test_an_unknown_policy_names_the_worlds_own(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "worldsim.cli", "record", "--env", ENV_ID, "--policy", "pushy",
                           "--episodes", "1", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=120, env=ENV)
    assert proc.returncode == 1 and "pusht-push" in proc.stderr and "unknown policy 'pushy'" in proc.stderr
