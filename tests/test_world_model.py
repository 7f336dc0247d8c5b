"""WorldModel: deterministic scoring, checkpoint round trips, and every user-facing error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldsim import (
    CheckpointError,
    ConfigError,
    InvalidAction,
    InvalidFrames,
    SessionStateError,
    WorldModel,
    preset,
)

ACTS = ["move left", "stay", "move up"]


def clip(t=4, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)


def test_scoring_is_deterministic_and_batched_equals_single(tiny):
    a = tiny.score(clip(), actions=ACTS)
    b = tiny.score(clip(), actions=ACTS)
    np.testing.assert_array_equal(a.log_prob, b.log_prob)
    assert a.log_prob.shape == a.bits_per_dim.shape == (4,) and a.space == "pixels"
    batch = tiny.score(np.stack([clip(), clip(seed=1)]), actions=[ACTS, ACTS])
    assert batch.log_prob.shape == (2, 4)
    np.testing.assert_allclose(batch.log_prob[0], a.log_prob, rtol=1e-5)
    np.testing.assert_allclose(a.bits_per_dim, -a.log_prob / (tiny.net.dims_per_frame * np.log(2)), rtol=1e-6)


def test_noise_draws_are_seeded_and_averaged(tiny):
    a = tiny.score(clip(), actions=ACTS, noise_draws=3, seed=1)
    b = tiny.score(clip(), actions=ACTS, noise_draws=3, seed=1)
    c = tiny.score(clip(), actions=ACTS, noise_draws=3, seed=2)
    np.testing.assert_array_equal(a.log_prob, b.log_prob)
    assert not np.array_equal(a.log_prob, c.log_prob) and a.noise_draws == 3


@pytest.mark.parametrize("fixture", ["tiny", "tiny_latent"])
def test_checkpoint_round_trip_gives_identical_scores(fixture, request, tmp_path):
    wm = request.getfixturevalue(fixture)
    frames = clip()
    wm.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "meta.json", "model.safetensors"]
    loaded = WorldModel.from_pretrained(tmp_path / "ckpt")
    np.testing.assert_array_equal(loaded.score(frames, actions=ACTS).log_prob, wm.score(frames, actions=ACTS).log_prob)
    assert loaded.config == wm.config


def test_half_precision_checkpoint_loads_as_float32(tiny, tmp_path):
    tiny.save(tmp_path / "half", half=True)
    loaded = WorldModel.from_pretrained(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in loaded.net.parameters())
    np.testing.assert_allclose(loaded.score(clip(), actions=ACTS).log_prob, tiny.score(clip(), actions=ACTS).log_prob,
                               rtol=2e-2)


def test_bad_checkpoints_raise_named_errors(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="is not a directory"):
        WorldModel.from_pretrained(tmp_path / "nothing-here")
    with pytest.raises(CheckpointError, match="no bundled model or checkpoint directory named 'pushworld-46'"):
        WorldModel.from_pretrained("pushworld-46")
    path = tiny.save(tmp_path / "c")
    (path / "meta.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete: missing meta.json"):
        WorldModel.from_pretrained(path)
    path = tiny.save(tmp_path / "c")
    data = (path / "model.safetensors").read_bytes()
    (path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        WorldModel.from_pretrained(path)
    path = tiny.save(tmp_path / "c")
    cfg = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99; this worldsim reads version 1"):
        WorldModel.from_pretrained(path)
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        WorldModel.from_pretrained(path)
    (path / "config.json").write_text(json.dumps({**cfg, "height": "tall"}))
    with pytest.raises(CheckpointError, match="does not validate"):
        WorldModel.from_pretrained(path)


def test_weights_that_do_not_match_the_config_are_named(tiny, tmp_path):
    path = tiny.save(tmp_path / "c")
    other = WorldModel.from_config(preset("tiny").merged(deep={"width": 32}))
    (path / "config.json").write_text(json.dumps(other.config.model_dump(mode="json")))
    with pytest.raises(CheckpointError, match="does not match config.json .*shape mismatch"):
        WorldModel.from_pretrained(path)


def test_unknown_preset_suggests_the_closest():
    with pytest.raises(ConfigError, match="unknown preset 'tiyn'.*Did you mean 'tiny'"):
        WorldModel.from_config("tiyn")


def test_invalid_config_is_a_config_error():
    with pytest.raises(ConfigError, match="not divisible by the codec's patch 4"):
        preset("tiny").merged(height=18)
    with pytest.raises(ConfigError, match="Extra inputs are not permitted"):
        preset("tiny").merged(colour="red")


@pytest.mark.parametrize(
    ("frames", "match"),
    [
        ([[0]], "must be a numpy uint8 array .* received list"),
        (np.zeros((4, 16, 16, 3), np.float32), r"dtype float32 with values in \[0, 0\].*\(x \* 255\)"),
        (np.full((4, 16, 16, 3), 300, np.int64), r"values in \[300, 300\].*expected uint8 values in \[0, 255\]"),
        (np.full((4, 16, 16, 3), np.nan, np.float32), "non-finite values"),
        (np.zeros((4, 16, 15, 3), np.uint8), r"shape \(4, 16, 15, 3\); expected \(T, 16, 16, 3\)"),
        (np.zeros((16, 16, 3), np.uint8), r"shape \(16, 16, 3\); expected \(T, 16, 16, 3\) or \(B, T, 16, 16, 3\)"),
    ],
)
def test_bad_frames_say_what_was_received_and_how_to_fix(tiny, frames, match):
    with pytest.raises(InvalidFrames, match=match):
        tiny.score(frames)


def test_wrong_action_counts_and_types(tiny):
    with pytest.raises(InvalidAction, match="received 2 for a clip of 4 frames; expected 3"):
        tiny.score(clip(), actions=ACTS[:2])
    with pytest.raises(InvalidAction, match="must be a string"):
        tiny.score(clip(), actions=["stay", 3, "stay"])
    with pytest.raises(InvalidAction, match="one list per clip: received 1 lists for a batch of 2 clips"):
        tiny.score(np.stack([clip(), clip()]), actions=[ACTS])


def test_session_errors(tiny):
    s = tiny.session(seed=0)
    with pytest.raises(SessionStateError, match="before reset"):
        s.step("stay")
    with pytest.raises(SessionStateError, match="needs frames=... .* or prompt=..."):
        s.reset()
    with pytest.raises(InvalidAction, match="actions between the reset frames: received 2 for a clip of 2 frames"):
        s.reset(frames=clip(2), actions=["stay", "stay"])
    with pytest.raises(InvalidAction, match="unknown action 'sty'.*Did you mean 'stay'"):
        s.reset(frames=clip(2), actions=["sty"])
    s.reset(frames=clip(2), actions=["stay"])
    with pytest.raises(InvalidAction, match="unknown action 'move lft'.*Did you mean 'move left'"):
        s.step("move lft")
    with pytest.raises(InvalidFrames, match="expected \\(16, 16, 3\\)"):
        s.observe(clip(2))
    s.close()
    with pytest.raises(SessionStateError, match="closed"):
        s.step("stay")
    with pytest.raises(InvalidAction, match="batch_size=2; expected a list of 2"):
        tiny.session(batch_size=2).reset(prompt="one prompt for two worlds")


def test_bad_session_settings_are_config_errors(tiny):
    with pytest.raises(ConfigError, match="sampler='jacobl' is not supported.*Did you mean 'jacobi'"):
        tiny.session(sampler="jacobl")
    with pytest.raises(ConfigError, match="denoise='tweedy' is not supported.*Did you mean 'tweedie'"):
        tiny.session(denoise="tweedy")
    with pytest.raises(ConfigError, match="batch_size must be an int ≥ 1; received 0"):
        tiny.session(batch_size=0)
    with pytest.raises(ConfigError, match="temperature=0: it must be > 0"):
        tiny.session(temperature=0)
    for name, value, match in (("temperature", float("nan"), "temperature=nan: expected a finite number"),
                               ("tol", float("inf"), "tol=inf: expected a finite number"),
                               ("guidance", float("nan"), "guidance=nan"), ("chunk", 0, "chunk=0: it must be ≥ 1"),
                               ("chunk", -1, "chunk=-1: it must be ≥ 1"), ("max_iter", 0, "max_iter=0: it must be ≥ 1"),
                               ("best_of", True, "best_of=True: expected an int"),
                               ("temperature", "1", "temperature='1': expected a number")):
        with pytest.raises(ConfigError, match=match):
            tiny.session(**{name: value})
    with pytest.raises(ConfigError, match="unknown session setting 'temprature'.*Did you mean 'temperature'"):
        tiny.session(temprature=1.0)
    assert tiny.session(temperature=1).settings.temperature == 1.0  # an int where a float is expected is fine


def test_session_basics(tiny):
    with tiny.session(seed=0) as s:
        first = s.reset(frames=clip(2), actions=["stay"])
        assert first.shape == (16, 16, 3) and first.dtype == np.uint8
        out = s.step("move left")
        assert out.frame.shape == (16, 16, 3) and np.isfinite(out.log_prob)
        assert out.bits_per_dim == pytest.approx(-out.log_prob / (tiny.net.dims_per_frame * np.log(2)))
        child = s.fork()
        a, b = s.step("stay").frame, child.step("stay").frame
        np.testing.assert_array_equal(a, b)  # a fork continues the same generator: same future
        child.step("move up")
        assert len(child.history) == 5 and len(s.history) == 4  # independent histories
        lp = s.observe(clip(1)[0], action="move down")
        assert np.isfinite(lp)
    with tiny.session(seed=0, batch_size=3) as s:
        s.reset(frames=np.stack([clip(2, seed=i) for i in range(3)]), actions=[["stay"] * 3])
        out = s.step(["move left", "stay", "move up"])
        assert out.frame.shape == (3, 16, 16, 3) and out.log_prob.shape == (3,)


def test_long_clips_are_scored_in_windows_equal_to_one_pass(tiny):
    t = 3 * tiny.config.deep.window + 2
    frames = clip(t, seed=5)
    acts = [ACTS[i % 3] for i in range(t - 1)]
    windowed = tiny.score(frames, actions=acts).log_prob
    net = tiny.net
    x = net.encode_frames(torch.from_numpy(frames)[None])
    cond = net.frame_conditions(net.action_embeddings([acts]), 1, t, 0)
    with torch.no_grad():
        one_pass = net(x, cond, net.new_state(net.prompt_embeddings([None]))).log_prob[0].numpy()
    np.testing.assert_allclose(windowed, one_pass, rtol=1e-5)


def test_frame_context_reanchors_on_the_shown_frame(tiny):
    def roll(context, seed=3):
        with tiny.session(seed=seed, context=context) as s:
            s.reset(frames=clip(2), actions=["stay"])
            outs = [s.step(a) for a in ACTS]
            return np.stack([o.frame for o in outs]), s.history
    a, hist = roll("frame")
    b, _ = roll("frame")
    c, _ = roll("sample")
    np.testing.assert_array_equal(a, b)  # seeded
    np.testing.assert_array_equal(a[0], c[0])  # the same first sample: only what enters the context differs
    assert not np.array_equal(a[1:], c[1:])
    np.testing.assert_array_equal(hist[2:], a)  # the history holds the shown frames
    with pytest.raises(ConfigError, match="context='noisy' is not supported"):
        tiny.session(context="noisy")


def test_batched_reset_on_several_frames_without_actions(tiny):
    with tiny.session(seed=0, batch_size=2) as s:
        last = s.reset(frames=np.stack([clip(3), clip(3, seed=1)]))
        assert last.shape == (2, 16, 16, 3) and s.actions == [[None, None], [None, None]]


@pytest.mark.parametrize("guidance", [0.0, 1.0])
def test_fork_into_a_batch_copies_the_world_k_times(tiny, guidance):
    with tiny.session(seed=0, guidance=guidance) as s:
        s.reset(frames=clip(2), actions=["stay"])
        s.step("move up")
        child = s.fork(batch_size=3)
        n = s.state.cache.length
        for parent_k, child_k in zip(s.state.cache.k, child.state.cache.k, strict=True):
            half = parent_k.shape[0]  # 1, or 2 with guidance ([cond; uncond])
            for r in range(half):
                for i in range(3):
                    assert torch.equal(child_k[r * 3 + i, :, :n], parent_k[r, :, :n])
        out = child.step(["move left", "stay", "move up"])
        assert out.frame.shape == (3, 16, 16, 3) and child.history.shape == (3, 4, 16, 16, 3)
        assert len(s.history) == 3  # the parent is untouched
    with tiny.session(batch_size=2) as s, pytest.raises(ConfigError, match="needs a batch-1 session"):
        s.fork(batch_size=4)


def test_sessions_take_the_checkpoints_sampling_defaults(tmp_path):
    wm = WorldModel.from_config("tiny", seed=0)
    wm.meta["sampling"] = {"temperature": 0.5}
    loaded = WorldModel.from_pretrained(wm.save(tmp_path / "t"))
    assert loaded.session().settings.temperature == 0.5
    assert loaded.session(temperature=0.9).settings.temperature == 0.9  # arguments win
    assert WorldModel.from_config("tiny").session().settings.temperature == 1.0  # none stored: Session's default
    loaded.meta["sampling"] = {"temperature": -1.0}
    with pytest.raises(ConfigError, match="temperature=-1.0"):
        loaded.session()


def test_importing_worldsim_flushes_denormal_floats():
    # Denormal activations made CPU steps of the bundled model ~15% slower (worldsim bench); worldsim flushes them.
    assert float(torch.tensor([1e-39]) * 2.0) == 0.0
    assert float(torch.tensor([1e-30]) * 2.0) == pytest.approx(2e-30)  # normal floats are untouched


def test_unbounded_or_empty_work_is_refused_with_named_errors(tiny):
    from worldsim.world_model import MAX_SCORE_FRAMES

    with pytest.raises(InvalidFrames, match="clip has no frames"):
        tiny.score(np.zeros((0, 16, 16, 3), np.uint8))
    with pytest.raises(InvalidFrames, match=f"score takes at most {MAX_SCORE_FRAMES} per call"):
        tiny.score(np.zeros((MAX_SCORE_FRAMES + 1, 16, 16, 3), np.uint8))
    with pytest.raises(ConfigError, match="noise_draws must be an int ≥ 0"):
        tiny.score(clip(), noise_draws=-1)
    with pytest.raises(InvalidAction, match="unknown action 'jump'.*strict_actions=False"):
        tiny.score(clip(), actions=["stay", "jump", "stay"])
    assert np.isfinite(tiny.score(clip(), actions=["stay", "jump", "stay"], strict_actions=False).log_prob).all()
    with tiny.session() as s, pytest.raises(InvalidFrames, match="with no frames; expected at least one"):
        s.reset(frames=np.zeros((0, 16, 16, 3), np.uint8))
