"""`worldsim eval`: metric functions on hand-made cases, implausible edits, and evaluate/CLI on a real small model."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from worldsim import WorldModel
from worldsim.envs import PushWorld
from worldsim.errors import ConfigError
from worldsim.eval_metrics import (
    EDIT_KINDS,
    Clip,
    auroc,
    detect,
    held_out_clip,
    implausible_clip,
    long_actions,
    lost_for_good_at,
    miss_penalty,
    moved_as_commanded,
)
from worldsim.evaluate import add_arguments, evaluate, format_table, open_loop_metrics, run, settings_from_args

SETTINGS = dict(episodes=2, horizon=2, long_horizon=4, context=2, seed=10_000)
TIMING = ("wall_time_s", "frames_per_s", "png")


@pytest.fixture(scope="module")
def small() -> WorldModel:
    return WorldModel.from_config("small", seed=0)


@pytest.fixture(scope="module")
def result(small, tmp_path_factory) -> dict:
    png = tmp_path_factory.mktemp("eval") / "eval.png"
    return evaluate(small, progress=False, out_png=png, **SETTINGS)


# ----- evaluate on an untrained model: structure, ranges, determinism -----------------------------------------
def test_result_has_every_metric_in_range(result):
    for key in ("bits_per_dim", "position_error_px_k1", "position_error_px_k2", "agent_error_px_k2",
                "block_error_px_k2", "copy_baseline_position_error_px_k1", "copy_baseline_position_error_px_k2",
                "miss_penalty_px", "wall_time_s"):
        assert isinstance(result[key], float) and np.isfinite(result[key]), key
    assert result["likelihood_space"] == "latents"
    assert (result["episodes"], result["horizon"], result["long_horizon"], result["seed"]) == (2, 2, 4, 10_000)
    assert result["model"]["name"] == "small" and result["meta"] == {"trained": False, "init_seed": 0}
    for key in ("position_error_px_k1", "position_error_px_k2", "copy_baseline_position_error_px_k2"):
        assert 0 <= result[key] <= result["miss_penalty_px"]
    for key in ("detection_rate_k2", "object_persistence", "plausibility_auroc", "plausibility_paired_accuracy"):
        assert 0 <= result[key] <= 1, key
    assert result["controllability"] is None or 0 <= result["controllability"] <= 1
    assert set(result["plausibility_auroc_by_kind"]) == set(EDIT_KINDS)
    assert len(result["position_error_px_by_step"]) == 2
    assert result["generated_frames"] == 2 * 2 + 2 * 4 and result["frames_per_s"] > 0
    assert set(result["targets"]) == {"position_error_px_k2", "position_error_px_k2_over_copy_baseline",
                                      "controllability", "object_persistence", "plausibility_auroc",
                                      "plausibility_localisation"}  # no false-alarm target: uncalibrated
    assert result["plausibility_false_alarm_rate"] is None and result["plausibility_detection_rate"] is None
    assert 0 <= result["plausibility_localisation"] <= 1
    by_rollout, lost = result["object_persistence_block_by_rollout"], result["block_lost_for_good_at"]
    assert len(by_rollout) == len(lost) == 2 and np.isclose(np.mean(by_rollout), result["object_persistence_block"])
    assert all(x is None or 0 <= x < 4 for x in lost)
    agent_by_rollout, agent_lost = result["object_persistence_agent_by_rollout"], result["agent_lost_for_good_at"]
    assert len(agent_by_rollout) == len(agent_lost) == 2
    assert np.isclose(np.mean(agent_by_rollout), result["object_persistence_agent"])
    assert all(x is None or 0 <= x < 4 for x in agent_lost)
    assert all(set(t) == {"value", "op", "threshold", "pass"} for t in result["targets"].values())
    assert not result["targets"]["position_error_px_k2"]["pass"]  # untrained: frames are noise-like
    json.dumps(result, allow_nan=False)  # JSON-ready, no NaN
    assert "plausibility AUROC" in format_table(result)


def test_lost_for_good_at_is_the_frame_after_the_last_sighting():
    assert lost_for_good_at(np.array([1, 1, 0, 1, 0, 0], bool)) == 4
    assert lost_for_good_at(np.array([1, 0, 0, 1], bool)) is None  # found again by the last frame
    assert lost_for_good_at(np.zeros(3, bool)) == 0
    assert lost_for_good_at(np.zeros(0, bool)) is None


def test_evaluate_is_deterministic(small, result):
    again = evaluate(small, progress=False, **SETTINGS)
    assert {k: v for k, v in again.items() if k not in TIMING} == {k: v for k, v in result.items() if k not in TIMING}


def test_filmstrip_is_written_and_small(result):
    from pathlib import Path

    png = Path(result["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 300_000


def test_evaluate_rejects_models_and_settings_it_cannot_measure(small, tiny):
    with pytest.raises(ConfigError, match=r"at least 32×32.*16×16"):
        evaluate(tiny, episodes=1, horizon=1, long_horizon=1, progress=False)
    with pytest.raises(ConfigError, match="episodes must be >= 1, got 0"):
        evaluate(small, episodes=0, progress=False)
    with pytest.raises(ConfigError, match="long_rollouts must be >= 1, got 0"):
        evaluate(small, episodes=1, long_rollouts=0, progress=False)


def test_long_rollouts_sets_how_many_episodes_get_a_long_rollout(small):
    one = evaluate(small, progress=False, **{**SETTINGS, "long_rollouts": 1})
    assert one["long_rollouts"] == 1 and one["generated_frames"] == 2 * 2 + 1 * 4


# ----- metric functions on hand-made cases --------------------------------------------------------------------
def test_auroc_on_hand_made_scores():
    assert auroc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert auroc([1.0, 2.0], [3.0, 4.0]) == 0.0
    assert auroc([2.0, 2.0], [2.0, 2.0, 2.0]) == 0.5
    assert auroc([3.0, 2.0], [1.0, 2.0]) == pytest.approx(3.5 / 4)  # one tie counts one half
    assert auroc([], [1.0]) is None
    with pytest.raises(ValueError, match="finite"):
        auroc([np.nan], [1.0])


def test_moved_as_commanded():
    assert moved_as_commanded(np.array([10.0, 10.0]), np.array([13.0, 10.5]), "move right")
    assert not moved_as_commanded(np.array([10.0, 10.0]), np.array([13.0, 10.5]), "move left")
    assert not moved_as_commanded(np.array([10.0, 10.0]), np.array([10.4, 10.0]), "move right")  # ≤ 0.5 px
    assert not moved_as_commanded(np.array([10.0, 10.0]), np.array([11.0, 8.0]), "move right")  # mostly sideways
    assert moved_as_commanded(np.array([10.0, 10.0]), np.array([10.0, 7.0]), "move up")  # y grows downwards
    assert not moved_as_commanded(None, np.array([10.0, 7.0]), "move up")
    assert miss_penalty(64, 64) == pytest.approx(45.2548, abs=1e-3)


def test_copy_baseline_at_k1_is_the_objects_mean_displacement():
    """Agent steps 3 px right, block rests: copying the last frame is 3 px off for the agent and 0 for the block."""
    env = PushWorld(size=64, render_mode="rgb_array", action_mode="text")
    # Centres on pixel centres: there the detector is exact, so only the motion is measured.
    obs, info = env.reset(seed=0, options={"agent_pos": (20.5, 20.5), "block_pos": (44.5, 44.5)})
    obs1, _, _, _, info1 = env.step("move right")
    clip = Clip(np.stack([obs, obs1]), ["move right"], np.array([info["agent_pos"], info1["agent_pos"]]),
                np.array([info["block_pos"], info1["block_pos"]]), np.array(info["goal_pos"]), 0)
    perfect = open_loop_metrics([clip], [clip.frames[1:]], context=1, horizon=1, penalty=45.0)
    assert perfect["copy_baseline_position_error_px_k1"] == pytest.approx((3.0 + 0.0) / 2, abs=1e-9)
    assert perfect["position_error_px_k1"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["controllability"] == 1.0 and perfect["controllability_steps"] == 1
    blank = np.full_like(clip.frames[1:], 30)  # a model that draws an empty floor: both objects missed
    missed = open_loop_metrics([clip], [blank], context=1, horizon=1, penalty=45.0)
    assert missed["position_error_px_k1"] == 45.0 and missed["detection_rate_k1"] == 0.0
    assert missed["controllability"] == 0.0


def test_real_frames_as_predictions_score_near_zero_error():
    clip = held_out_clip(64, 10_000, 0, 1, 18)
    r = open_loop_metrics([clip], [clip.frames[2:]], context=2, horizon=16, penalty=45.0)
    assert r["position_error_px_k16"] < 0.5 and r["detection_rate_k16"] == 1.0 and r["controllability"] == 1.0


def test_held_out_clip_reseeds_an_episode_that_ends_early():
    assert held_out_clip(64, 10_000, 3, 32, 18).world_seed == 10_003
    clip = held_out_clip(64, 14, 0, 1, 30)  # world seed 14 reaches the goal after 20 steps
    assert clip.world_seed == 15 and len(clip.frames) == 30 and len(clip.actions) == 29


def test_long_actions_continue_after_the_real_episode_ends():
    real, actions = long_actions(64, 14, 40)
    assert len(real.frames) < 41 and len(actions) == 40
    assert actions[: len(real.actions)] == real.actions
    assert set(actions) <= {"move up", "move down", "move left", "move right", "stay"}
    assert long_actions(64, 14, 40)[1] == actions


# ----- implausible edits ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", EDIT_KINDS)
def test_implausible_edits_change_frames_from_k_on(kind):
    clip = held_out_clip(64, 10_000, 1, 1, 10)
    k = 4
    frames, info = implausible_clip(kind, clip, k, np.random.default_rng(0))
    assert frames.dtype == np.uint8 and frames.shape == clip.frames.shape
    assert (frames[:k] == clip.frames[:k]).all()
    assert all((frames[t] != clip.frames[t]).any() for t in range(k, len(frames)))
    found, name = detect(frames[k]), info["object"]
    other = "agent" if name == "block" else "block"
    assert np.linalg.norm(found[other] - clip.positions(k)[other]) < 0.6  # the other object is untouched
    if kind == "teleport":
        expected = clip.positions(k)[name] + np.array(info["offset"])
        assert np.linalg.norm(info["offset"]) >= 20
        assert np.linalg.norm(found[name] - expected) < 0.6
    elif kind == "wall":
        assert min(found[name].min(), 63 - found[name].max()) < 4  # the centroid lies in the 4 px wall band
    else:  # vanish, recolour: the detector no longer finds the object
        assert found[name] is None


def test_edits_redraw_with_the_worlds_renderer():
    clip = held_out_clip(64, 10_000, 2, 1, 6)
    frames, _ = implausible_clip("teleport", clip, 3, np.random.default_rng(1))
    with pytest.raises(ValueError, match="unknown edit kind 'melt'"):
        implausible_clip("melt", clip, 3, np.random.default_rng(1))
    with pytest.raises(ValueError, match="k=0"):
        implausible_clip("vanish", clip, 0, np.random.default_rng(1))
    assert len(np.unique(frames.reshape(-1, 3), axis=0)) <= 5  # only PushWorld's palette: no blending artefacts


# ----- CLI hooks ------------------------------------------------------------------------------------------------
def test_cli_hooks_write_json_and_png(small, tmp_path, capsys):
    ckpt = small.save(tmp_path / "small")
    parser = argparse.ArgumentParser(prog="worldsim eval")
    add_arguments(parser)
    args = parser.parse_args(["--model", str(ckpt), "--json", str(tmp_path / "out" / "report.json"),
                              "--episodes", "1", "--horizon", "1", "--long-horizon", "2"])
    assert run(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["episodes"], report["horizon"], report["long_horizon"]) == (1, 1, 2)
    assert report["model"]["source"] == str(ckpt)
    assert (tmp_path / "out" / "report.png").stat().st_size > 0
    assert "object persistence" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--json", "x.json", "--episodes", "0"])
    defaults = settings_from_args(parser.parse_args(["--json", "x.json"]))
    assert defaults == {"episodes": 32, "seed": 10_000, "horizon": 16, "long_horizon": 480, "long_rollouts": 4,
                        "session": {}}  # unset: the checkpoint's sampling_defaults
    assert settings_from_args(parser.parse_args(["--json", "x.json", "--long-rollouts", "16"]))["long_rollouts"] == 16
    tuned = settings_from_args(parser.parse_args(["--json", "x.json", "--temperature", "0.7", "--guidance", "1.5",
                                                  "--context", "frame"]))
    assert tuned["session"] == {"temperature": 0.7, "guidance": 1.5, "context": "frame"}
    quick = settings_from_args(parser.parse_args(["--json", "x.json", "--quick"]))
    assert (quick["episodes"], quick["long_horizon"]) == (4, 64)
    few = settings_from_args(parser.parse_args(["--json", "x.json", "--quick", "--episodes", "2"]))
    assert (few["episodes"], few["long_horizon"]) == (2, 64)  # --quick caps, it does not raise
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --json is required
