"""`worldsim plan`: goal pairs from held-out episodes, the controllers (real simulator, random, a tiny untrained model)
on PushT and PushWorld, the report's keys, Wilson intervals, and the errors."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import worldsim
from worldsim.errors import ConfigError
from worldsim.plan_goals import Search, plan_goals, wilson
from worldsim.worlds import get

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
SMALL = ["--population", "16", "--iterations", "2", "--horizon", "2", "--action-repeat", "4"]
EPISODE_KEYS = {"pair", "controller", "seed", "step", "start", "goal", "success", "steps_to_success", "steps",
                "searches", "final", "final_distance", "start_distance", "time_s"}


def plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worldsim.cli", "plan", *args], capture_output=True, text=True,
                          timeout=300, env=ENV)


def test_wilson_intervals():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    low, high = wilson(0, 10)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson(10, 10)[1] == pytest.approx(1.0) and wilson(0, 0) == (0.0, 1.0)


def test_pairs_come_from_held_out_episodes_and_are_not_solved_at_the_start():
    pytest.importorskip("gym_pusht")
    goals = get("pusht").goals
    world = goals.make(64)
    pairs = goals.pairs(world, 3, 10_000, 25, "pairs")
    assert [p.seed for p in pairs] == sorted({p.seed for p in pairs}) and pairs[0].seed >= 10_000
    for p in pairs:
        assert not goals.success(p.start, p.goal, "pairs")
        assert p.frames.shape == (4, 64, 64, 3) and len(p.actions) == 3 and p.goal_frame.shape == (64, 64, 3)
        world.load(p.goal)
        assert np.array_equal(world.frame(), p.goal_frame)
    again = goals.pairs(world, 3, 10_000, 25, "pairs")
    assert [(p.seed, p.step, p.goal) for p in again] == [(p.seed, p.step, p.goal) for p in pairs]


def test_plan_on_pusht_real_and_random_through_the_cli(tmp_path):
    pytest.importorskip("gym_pusht")
    out = tmp_path / "plan.json"
    # goals 8 steps ahead: easy pairs, which the real simulator's search solves
    proc = plan("--env", "pusht", "--controllers", "real,random", "--episodes", "2", "--goal-offset", "8", *SMALL,
                "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "95% interval" in proc.stdout and "real" in proc.stdout and "random" in proc.stdout
    report = json.loads(out.read_text())
    assert report["complete"] and report["env_id"] == "gym_pusht/PushT-v0" and report["task"] == "pairs"
    assert report["protocol"]["budget"] == 50 and report["protocol"]["goal_offset"] == 8
    assert report["protocol"]["success"].startswith("the T within 20 units and 20°")
    assert set(report["summary"]) == {"real", "random"} and len(report["episodes"]) == 4
    for e in report["episodes"]:
        assert set(e) == EPISODE_KEYS and set(e["final_distance"]) == {"position", "angle_deg"}
        assert len(e["start"]) == len(e["goal"]) == 5 and e["steps"] <= 50
        if e["success"]:
            assert e["steps_to_success"] == e["steps"]
    real = report["summary"]["real"]
    assert real["successes"] >= 1 and set(real) == {"episodes", "successes", "success_rate", "interval_95",
                                                    "mean_final_distance", "mean_time_s"}
    assert real["interval_95"] == pytest.approx(list(wilson(real["successes"], 2)))


def test_plan_with_a_tiny_untrained_vector_model(tmp_path):
    pytest.importorskip("gym_pusht")
    spec = {"kind": "vector", "dim": 2, "low": [0.0, 0.0], "high": [512.0, 512.0]}
    model = worldsim.WorldModel.from_config(worldsim.preset("tiny").merged(action_spec=spec)).save(tmp_path / "m")
    out = tmp_path / "plan.json"
    proc = plan("--model", str(model), "--env", "gym_pusht/PushT-v0", "--controllers", "model", "--episodes", "1",
                "--budget", "4", "--population", "4", "--iterations", "1", "--horizon", "2", "--action-repeat", "2",
                "--pose-cost", "0.5", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    (episode,) = report["episodes"]
    assert report["model"] == str(model) and report["protocol"]["frame_size"] == 16
    assert episode["controller"] == "model" and episode["steps"] <= 4 and episode["searches"] >= 1
    assert report["search"]["pose_cost"] == 0.5


def test_pushworld_has_goals_too():
    report = plan_goals(get("pushworld"), ["real", "random"], 1, Search(horizon=3, action_repeat=1, population=8,
                                                                         iterations=1), size=64)
    assert report["env_id"] == "worldsim/PushWorld-v0" and report["protocol"]["budget"] == 50
    assert report["protocol"]["success"] == "block_pos within 4 px of its goal position"
    assert {e["controller"] for e in report["episodes"]} == {"real", "random"}
    first = report["episodes"][0]
    assert first["start_distance"]["position"] > 4 and math.isfinite(first["final_distance"]["position"])
    # a text-action model plans there too (the tiny preset's phrases are PushWorld's; frames resized to 16×16)
    tiny = worldsim.WorldModel.from_config("tiny")
    report = plan_goals(get("pushworld"), ["model"], 1, Search(horizon=2, action_repeat=1, population=4,
                                                               iterations=1), model=tiny, budget=3)
    (episode,) = report["episodes"]
    assert report["protocol"]["frame_size"] == 16 and episode["steps"] <= 3 and episode["searches"] >= 1


def test_the_native_pusht_task_starts_from_gym_pushts_reset():
    pytest.importorskip("gym_pusht")
    report = plan_goals(get("pusht"), ["random"], 1, Search(), size=64, task="native", budget=5)
    (episode,) = report["episodes"]
    assert report["protocol"]["success"] == "the T covers more than 95% of gym-pusht's goal zone"
    assert episode["goal"][2:] == pytest.approx([256.0, 256.0, math.pi / 4], abs=1e-3) and episode["steps"] == 5


def test_errors_say_what_to_do(tmp_path):
    out = str(tmp_path / "x.json")
    proc = plan("--env", "pushworld", "--controllers", "model", "--episodes", "1", "--json", out)
    assert proc.returncode == 1 and "needs --model" in proc.stderr
    proc = plan("--env", "pushworld", "--controllers", "real,oracle", "--episodes", "1", "--json", out)
    assert proc.returncode == 1 and "unknown controllers ['oracle']" in proc.stderr
    proc = plan("--controllers", "real", "--episodes", "1", "--json", out)
    assert proc.returncode == 1 and "give --env" in proc.stderr
    with pytest.raises(ConfigError, match=r"offers the planning tasks \['pairs'\]"):
        plan_goals(get("pushworld"), ["random"], 1, Search(), task="native")
    with pytest.raises(ConfigError, match="replan_every"):
        plan_goals(get("pushworld"), ["real"], 1, Search(horizon=2, replan_every=3))
    text_model = worldsim.WorldModel.from_config("tiny")
    pytest.importorskip("gym_pusht")
    with pytest.raises(ConfigError, match="plan with a model of this world"):
        plan_goals(get("pusht"), ["model"], 1, Search(), model=text_model)
    assert not Path(out).exists()
