"""Rooms: the Gymnasium contract in all action modes, head motion and walls, determinism, the detector, the data
policies, recording through the CLI, and the eval extras (on tiny models, and on the real world against itself)."""

from __future__ import annotations

import math
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldsim.envs  # noqa: F401  (registers worldsim/Rooms-v0)
from worldsim import WorldModel
from worldsim.config import preset
from worldsim.dataset import Dataset
from worldsim.envs.rooms.detector import agreement, detect_layout, horizon_colours
from worldsim.envs.rooms.env import PHRASE_VECTORS, RADIUS, ROOMS_ACTIONS, TURN_STEPS, Rooms, move, pose_motion
from worldsim.envs.rooms.eval import (
    eval_extras,
    fit_motion_probe,
    motion_fidelity,
    open_loop_pairs,
    out_and_back_plan,
    persistence,
    play,
    revisit_metrics,
    turn_plan,
)
from worldsim.envs.rooms.policies import POLICIES, env_action, out_and_back
from worldsim.envs.rooms.render import cast
from worldsim.errors import InvalidAction, WorldSimError
from worldsim.image_metrics import psnr
from worldsim.record import record_dataset
from worldsim.worlds import get

MODES = ("discrete", "text", "vector")
VECTOR_SPEC = {"kind": "vector", "dim": 3, "low": [-1.0] * 3, "high": [1.0] * 3}
TEXT_SPEC = {"kind": "text", "vocabulary": list(ROOMS_ACTIONS)}


def as_mode(phrase: str, mode: str):
    """A phrase as an action of `mode`'s space."""
    return {"text": phrase, "discrete": ROOMS_ACTIONS.index(phrase),
            "vector": np.array(PHRASE_VECTORS[phrase], np.float32)}[mode]


def true_colours(env: Rooms) -> np.ndarray:
    """The colour class of the wall each column's centre ray hits (what the detector should read)."""
    x, y, yaw = env.pose
    n, half = env.size, math.tan(env.fov / 2)
    cam = (np.arange(n) + 0.5) / n * 2 - 1
    _, face, cx, cy = cast(env.layout, x, y, math.cos(yaw) + math.sin(yaw) * half * cam,
                           math.sin(yaw) - math.cos(yaw) * half * cam)
    return env.layout.colour_class[env.layout.face_texture[face, cy, cx]]


def open_spot(env: Rooms, seed: int) -> tuple[float, float]:
    """The centre of a cell of the seed's map with no wall or pillar among its 8 neighbours."""
    env.reset(seed=seed)
    solid = env.layout.solid
    for y, x in np.argwhere(~solid):
        if not solid[y - 1:y + 2, x - 1:x + 2].any():
            return x + 0.5, y + 0.5
    raise AssertionError(f"seed {seed} has no open cell")


# ----- the env ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
def test_check_env_in_every_action_mode(mode):
    check_env(Rooms(render_mode="rgb_array", size=16, action_mode=mode))
    env = gym.make("worldsim/Rooms-v0", render_mode="rgb_array", action_mode=mode, size=16)
    assert env.spec.max_episode_steps == 200
    check_env(env.unwrapped)
    space = {"discrete": gym.spaces.Discrete, "text": gym.spaces.Text, "vector": gym.spaces.Box}[mode]
    assert isinstance(env.action_space, space)


def test_same_seed_same_world_and_frames_other_seed_other_map():
    def run(seed):
        env = Rooms(render_mode="rgb_array", size=24)
        obs, info = env.reset(seed=seed)
        frames = [obs] + [env.step(a)[0] for a in (2, 2, 0, 4, 3)]
        return np.stack(frames), info["pose"], env.layout.solid
    a, b, c = run(5), run(5), run(6)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[0].shape == (6, 24, 24, 3)
    assert a[2].shape != c[2].shape or not np.array_equal(a[2], c[2])


def test_the_head_moves_as_commanded_and_text_discrete_vector_agree():
    frames = {}
    for mode in MODES:
        env = Rooms(render_mode="rgb_array", size=16, action_mode=mode)
        x, y = open_spot(env, seed=3)
        env.reset(seed=3, options={"pose": (x, y, 0.0)})  # facing +x
        frames[mode] = [env.step(as_mode(p, mode))[0] for p in ("turn left", "move forward", "strafe right")]
        c, s = math.cos(math.pi / 12), math.sin(math.pi / 12)
        assert env.pose == pytest.approx((x + 0.25 * c + 0.25 * s, y + 0.25 * s - 0.25 * c, math.pi / 12))
    assert all(np.array_equal(frames["text"][i], frames[m][i]) for m in MODES for i in range(3))


def test_a_full_turn_in_place_shows_the_starting_view_again():
    env = Rooms(render_mode="rgb_array", size=32, action_mode="text")
    start, _ = env.reset(seed=1)
    for _ in range(TURN_STEPS):
        obs, *_ = env.step("turn left")
    assert TURN_STEPS == 24 and psnr(obs, start) > 50


def test_walls_stop_the_head_and_report_a_bump():
    env = Rooms(render_mode="rgb_array", size=16, action_mode="text")
    env.reset(seed=2)
    bumps = 0
    for _ in range(60):
        _, _, _, _, info = env.step("move forward")
        bumps += info["bump"]
        assert env.layout.is_free(*info["pose"][:2], RADIUS)
    assert bumps > 0 and info["bump"]


def test_a_negated_vector_command_undoes_a_step_exactly():
    env = Rooms(size=16, action_mode="vector")
    env.reset(seed=0, options={"pose": (*open_spot(env, seed=0), 0.3)})
    command = np.array([0.7, 0.6, -0.4])
    there, bump = move(env.layout, env.pose, command, env.max_turn, env.max_speed)
    back, _ = move(env.layout, there, -command, env.max_turn, env.max_speed)
    assert not bump and back == pytest.approx(env.pose)
    assert pose_motion(env.pose, there) == pytest.approx(command)


def test_named_errors_for_wrong_actions_and_settings():
    text, vector = Rooms(action_mode="text"), Rooms(action_mode="vector")
    for env in (text, vector):
        env.reset(seed=0)
    with pytest.raises(InvalidAction, match="Did you mean 'turn left'"):
        text.step("turn lft")
    with pytest.raises(InvalidAction, match="received the text 'turn left'"):
        vector.step("turn left")
    with pytest.raises(InvalidAction, match=r"in \[-1, 1\]"):
        vector.step(np.array([0.0, 2.0, 0.0]))
    with pytest.raises(InvalidAction, match=r"takes an int in \[0, 6\]"):
        Rooms().step(7.5)
    with pytest.raises(ValueError, match="size >= 16"):
        Rooms(size=8)
    with pytest.raises(ValueError, match="'vector'"):
        Rooms(action_mode="vektor")
    with pytest.raises(ValueError, match="inside or against a wall"):
        Rooms().reset(seed=0, options={"pose": (0.5, 0.5, 0.0)})


# ----- the detector -------------------------------------------------------------------------------------------
def test_the_detector_reads_each_columns_wall_colour():
    env = Rooms(render_mode="rgb_array", size=32, action_mode="text")
    obs, _ = env.reset(seed=4)
    right = total = 0
    for phrase in ("turn left",) * 12 + ("move forward",) * 6:
        obs, *_ = env.step(phrase)
        right += int((horizon_colours(obs) == true_colours(env)).sum())
        total += env.size
    assert right / total > 0.9
    found = detect_layout(obs)
    assert found["columns"].shape == (32,) and found["histogram"].sum() == pytest.approx(1.0)
    assert agreement(obs, obs) == 1.0
    with pytest.raises(ValueError, match="expects an"):
        detect_layout(np.zeros((8, 8), np.uint8))


# ----- policies and recording ---------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policies_act_in_the_envs_own_space_and_are_seeded(name, mode):
    def run():
        env = gym.make("worldsim/Rooms-v0", render_mode="rgb_array", action_mode=mode, size=16)
        policy, rng = POLICIES[name](), np.random.default_rng(0)
        obs, info = env.reset(seed=0)
        actions, bumps = [], 0
        for _ in range(80):
            action = policy(env, obs, info, rng)
            assert env.action_space.contains(action)
            obs, _, _, _, info = env.step(action)
            actions.append(np.asarray(action).tolist())
            bumps += info["bump"]
        return actions, bumps
    actions, bumps = run()
    assert run()[0] == actions
    if name == "rooms-bumps":
        assert bumps > 0
    if name == "rooms-turns":  # a whole turn in place first: 24 steps at 15°, or (vector) 32 or 48 slower ones
        first = actions[0]
        turn = next(i for i, a in enumerate(actions) if a != first)
        assert turn in (24, 32, 48) and (mode != "vector" or abs(first[0]) * 15 * turn == pytest.approx(360))


def test_the_mixed_policy_covers_every_phrase():
    env = Rooms(render_mode="rgb_array", size=16, action_mode="text")
    policy, rng, seen = POLICIES["rooms"](), np.random.default_rng(0), set()
    for seed in range(4):
        obs, info = env.reset(seed=seed)
        policy.reset()
        for _ in range(200):
            action = policy(env, obs, info, rng)
            obs, _, _, _, info = env.step(action)
            seen.add(action)
    assert seen == set(ROOMS_ACTIONS)


@pytest.mark.parametrize("vector", [False, True])
@pytest.mark.parametrize("steps", [8, 16, 32])
def test_out_and_back_paths_return_to_the_pose_they_left(steps, vector):
    env = Rooms(size=16, action_mode="vector" if vector else "text")
    env.reset(seed=7)
    start = env.pose
    path = out_and_back(env, steps, np.random.default_rng(1), vector)
    assert len(path) == steps
    for command in path:
        env.step(env_action(env, command))
    assert env.pose == pytest.approx(start, abs=1e-9)


def test_the_docs_figure_draws(tmp_path):
    from worldsim.envs.rooms.figure import save

    out = save(tmp_path / "rooms.png", seed=0, size=16)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_world_is_registered_by_name_and_env_id():
    world = get("rooms")
    assert get("worldsim/Rooms-v0") is world and world.default_policy in world.policies
    env = world.make_env(size=16, action_mode="vector")
    assert env.observation_space.shape == (16, 16, 3) and isinstance(env.action_space, gym.spaces.Box)
    assert world.detector(env.reset(seed=0)[0])["columns"].shape == (16,)
    assert all(p in ROOMS_ACTIONS for p in world.extras["demo_script"])


def test_record_through_the_cli(tmp_path):
    out = tmp_path / "rooms"
    done = subprocess.run([sys.executable, "-m", "worldsim.cli", "record", "--env", "worldsim/Rooms-v0", "--policy",
                           "rooms-turns", "--episodes", "4", "--max-steps", "5", "--size", "16", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    data = Dataset(out)
    assert len(data) == 4 and data.frame_size == (16, 16) and data.episode_lengths == [6] * 4
    assert data.action_spec.vocabulary == ROOMS_ACTIONS


def test_record_vector_actions(tmp_path):
    env = get("rooms").make_env(size=16, action_mode="vector")
    path = record_dataset(env, 2, tmp_path / "v", policy="rooms-revisit", max_steps=6, progress=False)
    spec = Dataset(path).action_spec
    assert spec.is_vector and spec.low == (-1.0,) * 3 and spec.high == (1.0,) * 3
    with pytest.raises(WorldSimError, match="unknown policy 'rooms-walks'.*rooms-walk"):
        record_dataset(env, 1, tmp_path / "w", policy="rooms-walks")


# ----- eval extras --------------------------------------------------------------------------------------------
SMALL = dict(episodes=2, horizon=4, context=2, motion_probe_transitions=64, motion_probe_steps=5, revisit_paths=1,
             revisit_lengths=(8,), long_horizon=6, long_rollouts=1, progress=False)


@pytest.mark.parametrize("spec", [TEXT_SPEC, VECTOR_SPEC], ids=["text", "vector"])
def test_eval_extras_run_on_a_tiny_model(spec):
    wm = WorldModel.from_config(preset("tiny").merged(action_spec=spec))
    r = eval_extras(wm, **SMALL)
    assert "extras_skipped" not in r
    for key in ("revisit_turn_360_psnr", "revisit_out_and_back_8_psnr", "revisit_turn_360_copy_baseline_psnr"):
        assert np.isfinite(r[key]) and 0 < r[key] < 60
    assert set(r["revisit_table"]) == {"turn_360", "out_and_back_8", "prediction_k1", "prediction_k4"}
    assert 0 <= r["persistence"] <= 1 and r["persistence_horizon"] == 6
    assert r["motion_fidelity_transitions"] == 8 and "motion_fidelity" in r
    assert r["generated_frames"] == 2 * 4 + TURN_STEPS + 8 + 6
    again = eval_extras(wm, **SMALL)
    assert {k: v for k, v in r.items() if k != "generation_s"} == {k: v for k, v in again.items()
                                                                     if k != "generation_s"}  # deterministic


def test_eval_extras_say_why_they_skip_a_model():
    pushworld_vocab = WorldModel.from_config("tiny")
    assert "has no actions ['turn left'" in eval_extras(pushworld_vocab)["extras_skipped"]
    flat = WorldModel.from_config(preset("tiny").merged(action_spec={**VECTOR_SPEC, "dim": 2, "low": [-1, -1],
                                                                     "high": [1, 1]}))
    assert "(yaw rate, forward, strafe)" in eval_extras(flat)["extras_skipped"]


def test_the_metrics_on_the_real_world_against_itself():
    context, horizon = 2, 8
    clips = [play(16, False, 100 + i, context + horizon - 1) for i in range(4)]
    real = [c.frames[context:] for c in clips]
    probe = fit_motion_probe(16, False, 0, transitions=512, steps=150)
    motion = motion_fidelity(probe, *open_loop_pairs(clips, real, context, horizon))
    assert motion["motion_fidelity_probe_real"] > 0 and motion["motion_fidelity"] == 1.0

    paths = {}
    for kind, plan in (("turn_360", turn_plan), ("out_and_back_16", out_and_back_plan(16))):
        paths[kind] = [(c, c.frames[context:]) for c in (play(16, vector, 200, context - 1, plan)
                                                         for vector in (False, True))]
    r = revisit_metrics(paths, context)
    assert r["revisit_out_and_back_16_psnr"] is None  # the real view itself: infinite PSNR
    assert r["revisit_turn_360_psnr"] is None or r["revisit_turn_360_psnr"] > 50
    assert r["revisit_turn_360_copy_baseline_psnr"] < 40  # one step (15°) earlier is another view

    kept = persistence(real, real, [c.frames[context - 1] for c in clips])
    assert kept["persistence"] == 1.0 and kept["persistence_column_agreement"] > 0.9


def test_worldsim_evaluate_adds_the_rooms_keys():
    from worldsim.eval_generic import evaluate

    wm = WorldModel.from_config(preset("tiny").merged(action_spec=TEXT_SPEC))
    r = evaluate(wm, env="rooms", episodes=2, horizon=4, probe_transitions=64, probe_steps=5, progress=False,
                 **{k: v for k, v in SMALL.items() if k not in ("episodes", "horizon", "context", "progress")})
    assert r["world"] == "rooms" and r["policy"] == "rooms"
    assert {"psnr_k1", "controllability", "motion_fidelity", "revisit_turn_360_psnr", "persistence"} <= set(r)
