"""Any world, any action, end to end through the command line: a Gymnasium env nobody here wrote, one with `Box`
actions (Pendulum) and one with `Discrete` actions (CartPole): record → train (a few steps) → load → a session of
the right action kind → the Gymnasium env with the right space (check_env) → score, counterfactual and a CEM plan
→ `worldsim eval --env` with the generic keys."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldsim.envs  # noqa: F401  (registers worldsim/WorldModel-v0)
from worldsim import InvalidAction, WorldModel
from worldsim.planning import cem, goal_frame

GENERIC_KEYS = {"psnr_k1", "psnr_k16", "copy_baseline_psnr_k1", "copy_baseline_psnr_k16", "ssim_k1", "ssim_k16",
                "bits_per_dim", "controllability"}


def cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "worldsim.cli", *args], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("env_id, kind", [("Pendulum-v1", "vector"), ("CartPole-v1", "text")])
def test_record_train_load_step_plan_and_eval(tmp_path, env_id, kind):
    data, out = tmp_path / "data", tmp_path / "run"
    cli("record", "--env", env_id, "--episodes", "6", "--max-steps", "12", "--size", "16", "--out", str(data))
    cli("train", "--data", str(data), "--out", str(out), "--preset", "tiny", "--steps", "4", "--batch", "4",
        "--frames", "6")
    wm = WorldModel.from_pretrained(out / "model")
    assert wm.action_spec.kind == kind and wm.meta["env_id"] == env_id

    real = gym.make(env_id, render_mode="rgb_array")
    real.reset(seed=0)
    first = np.asarray(cv2.resize(real.render(), (16, 16), interpolation=cv2.INTER_AREA), np.uint8)
    if kind == "vector":
        assert wm.action_spec.dim == 1 and wm.action_spec.low == (-2.0,) and wm.action_spec.high == (2.0,)
        acts, wrong = [np.array([0.5]), np.array([-1.5])], "move left"
    else:
        assert wm.vocabulary == ("action 0", "action 1")
        acts, wrong = ["action 0", "action 1"], np.array([0.5])
    with wm.session(seed=0) as s:
        s.reset(frames=first[None])
        for a in acts:
            assert s.step(a).frame.shape == (16, 16, 3)
        with pytest.raises(InvalidAction):
            s.step(wrong)
        plan = cem(s, goal_frame(first), horizon=2, population=4, elites=2, iterations=1)
        assert len(plan.actions) == 2 and all(wm.action_spec.check(a) is not None for a in plan.actions)
        clip = s.history
    report = wm.score(clip, actions=acts)
    assert report.bits_per_dim.shape == (3,) and np.isfinite(report.bits_per_dim).all()
    alt = wm.counterfactual(clip, acts, acts[::-1], from_step=1)
    assert alt.shape == clip.shape

    env = gym.make("worldsim/WorldModel-v0", model=wm)  # first frames from the model's own world (meta env_id)
    space = env.action_space
    assert isinstance(space, gym.spaces.Box if kind == "vector" else gym.spaces.Discrete)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*symmetric and normalized")  # Pendulum's own [-2, 2] box
        check_env(env.unwrapped)

    cli("eval", "--model", str(out / "model"), "--env", env_id, "--episodes", "2", "--quick", "--json",
        str(tmp_path / "eval.json"))
    result = json.loads((tmp_path / "eval.json").read_text())
    assert GENERIC_KEYS <= set(result), sorted(GENERIC_KEYS - set(result))
