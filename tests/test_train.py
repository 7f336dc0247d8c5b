"""The trainer on a real (32×32) PushWorld dataset: resume reproduces the trajectory, also after SIGTERM or
SIGKILL of a `worldsim train` process; 2-process DDP stays in sync."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from worldsim import WorldModel
from worldsim.cli import main
from worldsim.config import preset
from worldsim.envs.pushworld import PushWorld
from worldsim.errors import CheckpointError, WorldSimError
from worldsim.record import record_dataset
from worldsim.train import TrainSettings, _steps_for_budget, train
from worldsim.train_state import NothingToResume, StopSignals, read_metrics, trim_metrics

OVERRIDES = {"height": 32, "width": 32, "codec": {"downsample": 8}}
SETTINGS = TrainSettings(steps=6, batch=2, frames=4, codec_steps=8, codec_batch=8, warmup=2, checkpoint_every_s=1e9)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "pw32"
    return record_dataset(PushWorld(render_mode="rgb_array", size=32), 8, out, seed=0, max_steps=12, progress=False)


def config():
    return preset("tiny-latent").merged(**OVERRIDES)


def read(path):
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "step" in r]


def test_interrupt_and_resume_reproduces_the_uninterrupted_trajectory(data, tmp_path):
    train(data, tmp_path / "a", config(), SETTINGS, progress=False, until=3)
    assert json.loads((tmp_path / "a" / "state" / "meta.json").read_text())["step"] == 3
    train(data, tmp_path / "a", config(), SETTINGS, resume=True, progress=False)
    train(data, tmp_path / "b", config(), SETTINGS, progress=False)
    a, b = read(tmp_path / "a"), read(tmp_path / "b")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 7))
    assert [r["bpd"] for r in a] == [r["bpd"] for r in b]
    first = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < first["codec_mse"] < 1 and 0 < first["codec_mse_noisy"] < 1  # logged when the codec phase ends
    model = WorldModel.from_pretrained(tmp_path / "a" / "model")  # the EMA weights, loadable
    assert model.meta["step"] == 6 and model.meta["trained"] and model.config.actions == PushWorld.vocabulary
    assert (tmp_path / "a" / "loss.png").stat().st_size > 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_keeps_identical_weights(data, tmp_path):
    overrides = tmp_path / "config.json"
    overrides.write_text(json.dumps(OVERRIDES))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in range(2):  # a second try with a fresh port: the free port can be taken before torchrun binds it
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "worldsim.cli", "train", "--data", str(data),
               "--out", str(tmp_path / f"ddp{attempt}"), "--preset", "tiny-latent", "--config", str(overrides),
               "--steps", "3", "--batch", "2", "--frames", "4", "--codec-steps", "4", "--warmup", "1"]
        run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if run.returncode == 0:
            break
    assert run.returncode == 0, run.stderr[:3000] + "\n…\n" + run.stderr[-3000:]
    meta = json.loads((tmp_path / f"ddp{attempt}" / "state" / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["ranks_in_sync"] is True and meta["step"] == 3


def test_warm_start_loads_weights_and_sampling_skips_the_codec_and_refuses_another_config(data, tmp_path):
    src = train(data, tmp_path / "src", config(), SETTINGS, progress=False)
    recommended = {"temperature": 0.5, "tol": 5e-4}
    source = WorldModel.from_pretrained(src)
    source.meta["sampling"] = recommended
    source.save(src)
    warm = TrainSettings(**{**SETTINGS.__dict__, "steps": 0, "init_from": str(src)})
    before = source.net.state_dict()
    train(data, tmp_path / "warm", config(), warm, progress=False)  # 0 steps: the saved model is the start
    warmed = WorldModel.from_pretrained(tmp_path / "warm" / "model")
    after = warmed.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert warmed.sampling_defaults == recommended  # it samples as the model it came from recommends
    rows = [json.loads(line) for line in (tmp_path / "warm" / "metrics.jsonl").read_text().splitlines()]
    assert not any("codec_step" in r for r in rows)  # the codec phase was skipped
    other = config().merged(noise_std=0.3)
    with pytest.raises(WorldSimError, match=r"init_from .*differs.*noise_std"):
        train(data, tmp_path / "bad", other, warm, progress=False)


def test_budget_sizes_the_schedule_from_the_measured_speed(data, tmp_path):
    s = TrainSettings(**{**SETTINGS.__dict__, "steps": 10**6})
    train(data, tmp_path / "b", config(), s, progress=False, budget_s=0.0)  # budget spent: end right after probe
    meta = json.loads((tmp_path / "b" / "state" / "meta.json").read_text())
    assert meta["settings"]["steps"] == meta["step"] == 41
    assert _steps_for_budget(100, 2.0, 60.0, 10.0) == 200


def test_ema_decay_zero_ships_the_last_raw_weights_and_the_flag_checks_its_range(data, tmp_path):
    import argparse

    from safetensors.torch import load_file

    from worldsim.train import add_arguments

    train(data, tmp_path / "e", config(), TrainSettings(**{**SETTINGS.__dict__, "ema": 0.0}), progress=False)
    shipped = WorldModel.from_pretrained(tmp_path / "e" / "model").net.state_dict()
    raw = {k[6:]: v for k, v in load_file(tmp_path / "e" / "state" / "model.safetensors").items()
           if k.startswith("model.")}
    floats = [k for k in raw if raw[k].is_floating_point()]
    assert floats and all(torch.equal(shipped[k], raw[k]) for k in floats)
    p = argparse.ArgumentParser()
    add_arguments(p)
    assert p.parse_args(["--data", "d", "--out", "o", "--ema", "0.99"]).ema == 0.99
    with pytest.raises(SystemExit):
        p.parse_args(["--data", "d", "--out", "o", "--ema", "1.0"])


def test_held_out_bits_per_dim_shortens_its_windows_to_the_held_out_episodes(data):
    """A small dataset whose held-out episodes are shorter than the training clips must not fail every checkpoint:
    the held-out windows shrink to the longest held-out episode (13 frames here) instead."""
    from worldsim.dataset import Dataset
    from worldsim.model.flow import FlowNet
    from worldsim.train import held_out_bpd

    ds, net = Dataset(data), FlowNet(config())
    assert max(ds.episode_lengths) < 40
    long_clips = TrainSettings(**{**SETTINGS.__dict__, "frames": 40})
    bpd = held_out_bpd(net, ds, [0, 1], long_clips, n=2)
    assert bpd == held_out_bpd(net, ds, [0, 1], TrainSettings(**{**SETTINGS.__dict__, "frames": 13}), n=2)
    assert torch.isfinite(torch.tensor(bpd))
    assert math.isnan(held_out_bpd(net, ds, [], long_clips))  # none held out


# ----- stopping and resuming a `worldsim train` process -----------------------------------------------------------
@pytest.fixture
def one_thread():
    """Subprocess and in-process steps are compared bit for bit: both on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def start_train(data, out, tmp_path, *extra):
    overrides = tmp_path / "overrides.json"
    overrides.write_text(json.dumps(OVERRIDES))
    cmd = [sys.executable, "-m", "worldsim.cli", "train", "--data", str(data), "--out", str(out), "--preset",
           "tiny-latent", "--config", str(overrides), "--batch", "2", "--frames", "4", "--warmup", "2",
           "--checkpoint-every", "1e9", "--threads", "1", *extra]
    return subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_rows(proc, out, key, n, timeout_s=120.0):
    """Until metrics.jsonl has n rows with `key` (a timeout, not a speed check: the run is expected to get there)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        path = out / "metrics.jsonl"
        if path.exists() and sum(key in r for r in read_metrics(path)) >= n:
            return
        if proc.poll() is not None:
            pytest.fail(f"train exited {proc.returncode} early: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {n} {key!r} rows in {timeout_s} s: {proc.communicate()[1][-3000:]}")


def test_sigterm_then_sigkill_then_resume_follows_the_uninterrupted_trajectory_one_metrics_row_per_step(
        data, tmp_path, one_thread):
    out = tmp_path / "run"
    proc = start_train(data, out, tmp_path, "--steps", "100000", "--codec-steps", "8")
    try:
        wait_for_rows(proc, out, "bpd", 3)
        proc.send_signal(signal.SIGTERM)  # what a scheduler sends; the default 300 s interval has saved nothing yet
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-3000:]
    meta = json.loads((out / "state" / "meta.json").read_text())
    n = meta["step"]
    assert n >= 3 and f"stopped by SIGTERM at step {n} of 100000: state saved in {out / 'state'}" in err
    assert [r["step"] for r in read(out)] == list(range(1, n + 1))
    assert WorldModel.from_pretrained(out / "model").meta["step"] == n

    proc = start_train(data, out, tmp_path, "--steps", "100000", "--codec-steps", "8", "--resume")
    try:
        wait_for_rows(proc, out, "bpd", n + 3)
        proc.kill()  # SIGKILL: no checkpoint since the resume, rows after step n already logged
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert json.loads((out / "state" / "meta.json").read_text())["step"] == n
    assert [r["step"] for r in read(out)][: n + 3] == list(range(1, n + 4))

    s = TrainSettings(**meta["settings"])
    train(data, out, config(), s, resume=True, progress=False, until=n + 2)
    train(data, tmp_path / "straight", config(), s, progress=False, until=n + 2)
    a, b = read(out), read(tmp_path / "straight")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, n + 3))  # no step twice
    assert [r["bpd"] for r in a] == [r["bpd"] for r in b]  # the same trajectory, bit for bit
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum("codec_mse" in r for r in rows) == 1

    with pytest.raises(CheckpointError, match=r"holds a run trained with another config \(noise_std 0.2 → 0.3"):
        train(data, out, config().merged(noise_std=0.3), s, resume=True, progress=False)
    state_config = out / "state" / "config.json"
    state_config.write_text(json.dumps({**json.loads(state_config.read_text()), "height": 64, "width": 64}))
    with pytest.raises(CheckpointError, match=r"config.json asks for 64×64 frames .* saved for 32×32 frames"):
        train(data, out, config(), s, resume=True, progress=False)


def test_sigterm_in_the_codec_phase_saves_nothing_and_resume_or_start_starts_fresh(data, tmp_path):
    out = tmp_path / "run"
    proc = start_train(data, out, tmp_path, "--steps", "3", "--codec-steps", "100000")
    try:
        wait_for_rows(proc, out, "codec_step", 1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "stopped by SIGTERM in the codec phase" in err, err[-3000:]
    assert not (out / "state").exists()
    with pytest.raises(NothingToResume, match=r"holds no saved training state .* --resume-or-start"):
        train(data, out, config(), SETTINGS, resume=True, progress=False)
    train(data, out, config(), SETTINGS, resume=True, start_if_no_state=True, progress=False)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    codec_steps = [r["codec_step"] for r in rows if "codec_step" in r]
    assert codec_steps == [] and [r["step"] for r in rows if "step" in r] == list(range(1, 7))  # no stale rows


def test_trim_metrics_keeps_the_rows_up_to_the_saved_step_and_drops_torn_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"codec_step": 25}, {"codec_mse": 0.1}, *({"step": i, "bpd": 1.0 / i} for i in range(1, 6))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "bp')  # killed mid-write
    assert trim_metrics(path, 3) == 3 and read_metrics(path) == rows[:5]
    assert trim_metrics(path, 3) == 0 and path.read_text().endswith("\n")
    assert trim_metrics(path, None) == 5 and path.read_text() == ""  # a fresh start keeps nothing
    assert trim_metrics(tmp_path / "none.jsonl", 3) == 0


def test_resume_without_state_is_a_named_error_on_the_command_line(data, tmp_path, capsys):
    status = main(["train", "--data", str(data), "--out", str(tmp_path / "empty"), "--preset", "tiny-latent",
                   "--resume"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("error: resume: ") and "holds no saved training state" in err and len(err.splitlines()) == 1


def test_stop_signals_defer_the_first_signal_interrupt_on_the_second_and_restore_the_handlers():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with StopSignals() as stops:
        signal.raise_signal(signal.SIGTERM)
        assert stops.requested and stops.name == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    seen = []

    def elsewhere():
        with StopSignals():
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=elsewhere)
    worker.start()
    worker.join(timeout=10)
    assert seen == [before[0]]  # handlers can only be set in the main thread: there it leaves them alone
