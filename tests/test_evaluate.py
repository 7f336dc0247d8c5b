"""`worldsim eval`: the generic eval on tiny models (PushWorld, Gymnasium Discrete and Box envs), PushWorld's extras
on a small model, their metric functions on hand-made cases, implausible edits, and the CLI hooks."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from worldsim import WorldModel
from worldsim.actions import ActionSpec
from worldsim.config import preset
from worldsim.envs import PushWorld
from worldsim.envs.pushworld_eval import (
    EDIT_KINDS,
    Clip,
    detect,
    eval_extras,
    held_out_clip,
    implausible_clip,
    long_actions,
    miss_penalty,
    moved_as_commanded,
    open_loop_metrics,
)
from worldsim.errors import ConfigError
from worldsim.eval_generic import DEFAULT_ENV_ID, Episode, RealEnv, controllability, frame_metrics, model_env_id
from worldsim.eval_metrics import auroc, lost_for_good_at
from worldsim.evaluate import add_arguments, evaluate, format_table, run, settings_from_args
from worldsim.probe import InverseDynamicsProbe
from worldsim.worlds import get as get_world

FAST = dict(episodes=2, horizon=2, context=2, seed=10_000, probe_transitions=48, probe_steps=3, progress=False)
SETTINGS = dict(FAST, long_horizon=4)
TIMING = ("wall_time_s", "frames_per_s", "png")
GENERIC = ["bits_per_dim", "psnr_k1", "psnr_k2", "copy_baseline_psnr_k1", "copy_baseline_psnr_k2", "ssim_k1",
           "ssim_k2", "copy_baseline_ssim_k1", "copy_baseline_ssim_k2", "controllability",
           "controllability_probe_real", "controllability_probe_imagined"]


def _without_timing(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in TIMING}


# ----- the generic eval on tiny untrained models ----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_pushworld(tiny, tmp_path_factory) -> dict:
    png = tmp_path_factory.mktemp("eval") / "tiny.png"
    return evaluate(tiny, env="worldsim/PushWorld-v0", out_png=png, **FAST)


def test_generic_eval_writes_every_key_for_a_text_model(tiny_pushworld):
    r = tiny_pushworld
    for key in GENERIC:
        assert r[key] is None or np.isfinite(r[key]), key
    for key in ("bits_per_dim", "psnr_k1", "psnr_k2", "ssim_k2", "controllability_probe_real"):
        assert isinstance(r[key], float), key
    assert 0 < r["psnr_k1"] < 100 and -1 <= r["ssim_k1"] <= 1 and 0 <= r["controllability_probe_imagined"] <= 1
    assert r["ssim_k1"] < r["copy_baseline_ssim_k1"]  # untrained: noise-like frames, worse than copying
    assert (r["env_id"], r["env_id_from"], r["world"], r["policy"]) == ("worldsim/PushWorld-v0", "argument",
                                                                       "pushworld", "pushworld")
    assert r["controllability_probe_metric"] == "accuracy" and r["controllability_transitions"] == 4
    assert len(r["psnr_by_step"]) == len(r["copy_baseline_ssim_by_step"]) == 2
    assert r["generated_frames"] == 4 and r["world_seeds"] == [10_000, 10_001]
    assert "at least 32×32" in r["extras_skipped"]  # PushWorld's detector cannot read 16×16 frames
    json.dumps(r, allow_nan=False)
    assert "controllability (probe imagined / real)" in format_table(r) and "skipped" in format_table(r)


def test_generic_eval_is_deterministic(tiny, tiny_pushworld):
    again = evaluate(tiny, env="worldsim/PushWorld-v0", **FAST)
    assert _without_timing(again) == _without_timing(tiny_pushworld)


def test_the_env_comes_from_the_models_meta_else_pushworld(tiny):
    assert model_env_id(tiny) == (DEFAULT_ENV_ID, "default")
    named = WorldModel(tiny.net, meta={"env_id": "CartPole-v1"})
    assert model_env_id(named) == ("CartPole-v1", "meta")
    assert model_env_id(WorldModel(tiny.net, meta={"data_source": {"env_id": "X-v0"}})) == ("X-v0", "meta")


def test_generic_eval_on_a_gymnasium_discrete_env():
    model = WorldModel.from_config(preset("tiny").merged(actions=["action 0", "action 1"]), seed=1)
    model.meta["env_id"] = "CartPole-v1"
    r = evaluate(model, **FAST)  # the env from the meta; 400×600 renders resized to 16×16
    assert (r["env_id"], r["env_id_from"], r["world"], r["policy"]) == ("CartPole-v1", "meta", None, "random")
    assert all(key in r for key in GENERIC) and "extras_skipped" not in r and "targets" not in r
    assert r["controllability_probe_metric"] == "accuracy"


def test_generic_eval_on_a_gymnasium_box_env_with_a_vector_model():
    spec = ActionSpec.vector([-2.0], [2.0])  # Pendulum-v1's torque
    model = WorldModel.from_config(preset("tiny").merged(action_spec=spec.model_dump()), seed=1)
    r = evaluate(model, env="Pendulum-v1", **FAST)
    assert all(key in r for key in GENERIC) and r["controllability_probe_metric"] == "r2"
    assert r["controllability_probe_chance"] == 0.0 and r["model"]["action_spec"].startswith("vector, d=1")
    json.dumps(r, allow_nan=False)


def test_generic_eval_errors_say_what_is_wrong(tiny):
    with pytest.raises(ConfigError, match="episodes must be >= 1, got 0"):
        evaluate(tiny, **{**FAST, "episodes": 0})
    with pytest.raises(ConfigError, match="probe_transitions must be >= 2"):
        evaluate(tiny, **{**FAST, "probe_transitions": 1})
    with pytest.raises(ConfigError, match="has vector actions.*takes text actions"):
        evaluate(tiny, env="Pendulum-v1", **FAST)
    with pytest.raises(ConfigError, match="cannot make env 'NoSuchEnv-v9'"):
        evaluate(tiny, env="NoSuchEnv-v9", **FAST)
    cartpole = RealEnv("CartPole-v1", ActionSpec.text(["left", "right", "up"]), 16, 16)  # 3 words, 2 actions
    with pytest.raises(ConfigError, match="took the action 'action 1', which is not in the model's vocabulary"):
        cartpole.model_action(1)
    cartpole.close()


def test_frame_metrics_and_controllability_of_a_perfect_prediction(tiny):
    real = RealEnv("worldsim/PushWorld-v0", tiny.action_spec, 16, 16)
    eps = [real.held_out(10_000, i, 3, 6) for i in range(3)]
    before, after, actions = real.transitions(20_000, 256)
    real.close()
    perfect = [ep.frames[2:6] for ep in eps]  # the real future as the prediction
    m = frame_metrics(eps, perfect, context=2, horizon=4)
    assert m["psnr_k1"] is None and m["ssim_k4"] == pytest.approx(1.0)  # exact at every step: infinite PSNR
    assert m["copy_baseline_psnr_k4"] < 100 and m["copy_baseline_ssim_k4"] < 1
    probe = InverseDynamicsProbe.fit(before, after, actions, tiny.action_spec, steps=150)
    c = controllability(probe, eps, perfect, context=2, horizon=4)
    assert c["controllability_probe_real"] > 0 and c["controllability_transitions"] == 12
    assert c["controllability_probe_imagined"] == c["controllability_probe_real"] and c["controllability"] == 1.0
    assert 0 < c["controllability_probe_chance"] <= 1


def test_episodes_resize_frames_and_carry_model_actions(tiny):
    real = RealEnv("worldsim/PushWorld-v0", tiny.action_spec, 16, 16)
    ep, ended = real.episode(5, 3)
    real.close()
    assert isinstance(ep, Episode) and ep.frames.shape == (4, 16, 16, 3) and not ended
    assert set(ep.actions) <= set(tiny.vocabulary) and ep.world_seed == 5


# ----- PushWorld's extras on a small untrained model ------------------------------------------------------------
@pytest.fixture(scope="module")
def small() -> WorldModel:
    return WorldModel.from_config("small", seed=0)


@pytest.fixture(scope="module")
def result(small, tmp_path_factory) -> dict:
    png = tmp_path_factory.mktemp("eval") / "eval.png"
    return evaluate(small, out_png=png, **SETTINGS)


def test_result_has_every_metric_in_range(result):
    for key in ("bits_per_dim", "position_error_px_k1", "position_error_px_k2", "agent_error_px_k2",
                "block_error_px_k2", "copy_baseline_position_error_px_k1", "copy_baseline_position_error_px_k2",
                "miss_penalty_px", "wall_time_s", "psnr_k2", "ssim_k2"):
        assert isinstance(result[key], float) and np.isfinite(result[key]), key
    assert result["likelihood_space"] == "latents" and result["env_id_from"] == "default"
    assert (result["episodes"], result["horizon"], result["long_horizon"], result["seed"]) == (2, 2, 4, 10_000)
    assert result["model"]["name"] == "small" and result["meta"] == {"trained": False, "init_seed": 0}
    for key in ("position_error_px_k1", "position_error_px_k2", "copy_baseline_position_error_px_k2"):
        assert 0 <= result[key] <= result["miss_penalty_px"]
    for key in ("detection_rate_k2", "object_persistence", "plausibility_auroc", "plausibility_paired_accuracy"):
        assert 0 <= result[key] <= 1, key
    assert result["controllability_detector"] is None or 0 <= result["controllability_detector"] <= 1
    assert set(result["plausibility_auroc_by_kind"]) == set(EDIT_KINDS)
    assert len(result["position_error_px_by_step"]) == 2
    assert result["generated_frames"] == 2 * 2 + 2 * 4 and result["frames_per_s"] > 0
    assert set(result["targets"]) == {"position_error_px_k2", "position_error_px_k2_over_copy_baseline",
                                      "controllability_detector", "object_persistence", "plausibility_auroc",
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
    assert "target plausibility_auroc" in format_table(result)


def test_extras_alone_equal_the_extras_inside_the_generic_eval(small, result):
    """Inside the generic eval the extras reuse its rollouts and scores; on their own they make them again."""
    alone = eval_extras(small, **{k: v for k, v in SETTINGS.items() if "probe" not in k})
    frames, _ = alone.pop("generated_frames"), alone.pop("generation_s")
    assert frames == 2 * 2 + 2 * 4
    assert {k: result[k] for k in alone} == alone


def test_the_pushworld_plugin_exposes_its_eval(small):
    world = get_world("pushworld")
    assert world.eval_extras is eval_extras and world.extras["held_out_clip"] is held_out_clip
    assert {"implausible_clip", "detect", "long_actions"} <= set(world.extras)


def test_extras_skip_models_they_cannot_measure_and_reject_bad_settings(small, tiny):
    assert "16×16" in eval_extras(tiny, episodes=1)["extras_skipped"]
    with pytest.raises(ConfigError, match="long_rollouts must be >= 1, got 0"):
        eval_extras(small, episodes=1, long_rollouts=0, progress=False)


def test_long_rollouts_sets_how_many_episodes_get_a_long_rollout(small):
    one = evaluate(small, **{**SETTINGS, "long_rollouts": 1})
    assert one["long_rollouts"] == 1 and one["generated_frames"] == 2 * 2 + 1 * 4


def test_filmstrip_is_written_and_small(result):
    from pathlib import Path

    png = Path(result["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size < 300_000


# ----- metric functions on hand-made cases --------------------------------------------------------------------
def test_lost_for_good_at_is_the_frame_after_the_last_sighting():
    assert lost_for_good_at(np.array([1, 1, 0, 1, 0, 0], bool)) == 4
    assert lost_for_good_at(np.array([1, 0, 0, 1], bool)) is None  # found again by the last frame
    assert lost_for_good_at(np.zeros(3, bool)) == 0
    assert lost_for_good_at(np.zeros(0, bool)) is None


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
    assert perfect["controllability_detector"] == 1.0 and perfect["controllability_detector_steps"] == 1
    blank = np.full_like(clip.frames[1:], 30)  # a model that draws an empty floor: both objects missed
    missed = open_loop_metrics([clip], [blank], context=1, horizon=1, penalty=45.0)
    assert missed["position_error_px_k1"] == 45.0 and missed["detection_rate_k1"] == 0.0
    assert missed["controllability_detector"] == 0.0


def test_real_frames_as_predictions_score_near_zero_error():
    clip = held_out_clip(64, 10_000, 0, 1, 18)
    r = open_loop_metrics([clip], [clip.frames[2:]], context=2, horizon=16, penalty=45.0)
    assert r["position_error_px_k16"] < 0.5 and r["detection_rate_k16"] == 1.0 and r["controllability_detector"] == 1.0


def test_held_out_clip_reseeds_an_episode_that_ends_early():
    assert held_out_clip(64, 10_000, 3, 32, 18).world_seed == 10_003
    clip = held_out_clip(64, 14, 0, 1, 30)  # world seed 14 reaches the goal after 20 steps
    assert clip.world_seed == 15 and len(clip.frames) == 30 and len(clip.actions) == 29


def test_generic_held_out_episodes_are_pushworlds_held_out_clips(small):
    """The generic recorder (registry env and policy) replays PushWorld's own held-out clips exactly, reseeding
    included, so the extras reuse the generic rollouts."""
    real = RealEnv("pushworld", small.action_spec, 64, 64)
    ep = real.held_out(14, 0, 1, 30)
    real.close()
    clip = held_out_clip(64, 14, 0, 1, 30)
    assert ep.world_seed == clip.world_seed == 15
    assert np.array_equal(ep.frames, clip.frames) and ep.actions == clip.actions


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
def test_cli_hooks_write_json_and_png(tiny, tmp_path, capsys):
    ckpt = tiny.save(tmp_path / "tiny")
    parser = argparse.ArgumentParser(prog="worldsim eval")
    add_arguments(parser)
    args = parser.parse_args(["--model", str(ckpt), "--json", str(tmp_path / "out" / "report.json"),
                              "--episodes", "1", "--horizon", "1", "--probe-transitions", "16", "--probe-steps", "2"])
    assert run(args) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert (report["episodes"], report["horizon"], report["probe_train_transitions"]) == (1, 1, 16)
    assert report["model"]["source"] == str(ckpt) and all(key.replace("k2", "k1") in report for key in GENERIC)
    assert (tmp_path / "out" / "report.png").stat().st_size > 0
    assert "PSNR k1 (copy baseline)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        parser.parse_args(["--json", "x.json", "--episodes", "0"])
    defaults = settings_from_args(parser.parse_args(["--json", "x.json"]))
    assert defaults == {"env": None, "episodes": 32, "seed": 10_000, "horizon": 16, "long_horizon": 480,
                        "long_rollouts": 4, "probe_transitions": 2048, "probe_steps": 400, "extras": True,
                        "session": {}}  # unset: the checkpoint's sampling_defaults
    assert settings_from_args(parser.parse_args(["--json", "x.json", "--long-rollouts", "16"]))["long_rollouts"] == 16
    tuned = settings_from_args(parser.parse_args(["--json", "x.json", "--temperature", "0.7", "--guidance", "1.5",
                                                  "--context", "frame", "--env", "CartPole-v1", "--no-extras"]))
    assert tuned["session"] == {"temperature": 0.7, "guidance": 1.5, "context": "frame"}
    assert tuned["env"] == "CartPole-v1" and tuned["extras"] is False
    quick = settings_from_args(parser.parse_args(["--json", "x.json", "--quick"]))
    assert (quick["episodes"], quick["long_horizon"], quick["probe_transitions"], quick["probe_steps"]) == (4, 64,
                                                                                                          512, 150)
    few = settings_from_args(parser.parse_args(["--json", "x.json", "--quick", "--episodes", "2"]))
    assert (few["episodes"], few["long_horizon"]) == (2, 64)  # --quick caps, it does not raise
    with pytest.raises(SystemExit):
        parser.parse_args([])  # --json is required
