"""The `worldsim` command run as a real subprocess (and in process through `main`) with tiny budgets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from worldsim import WorldModel, __version__
from worldsim.cli import main
from worldsim.dataset import Dataset


def worldsim(*args: str) -> subprocess.CompletedProcess:
    # One thread: 16×16 models gain nothing from more, and spinning threads crawl on a busy 2-core machine.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "worldsim.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return WorldModel.from_config("tiny", seed=0).save(tmp_path_factory.mktemp("models") / "tiny")


def test_help_lists_the_subcommands() -> None:
    proc = worldsim("--help")
    assert proc.returncode == 0, proc.stderr
    for command in ("demo", "info", "record"):
        assert command in proc.stdout


def test_info_shows_version_and_torch(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"worldsim {__version__}" in out and "bundled models:" in out and "torch " in out


def test_info_on_a_checkpoint_shows_config_and_likelihood_space(tiny_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--model", str(tiny_path)]) == 0
    out = capsys.readouterr().out
    assert "16×16" in out and "parameters" in out and "over pixels" in out and "meta.trained" in out
    assert "untrained" in out


def test_a_missing_checkpoint_is_one_error_line_and_exit_1() -> None:
    proc = worldsim("info", "--model", "/nonexistent")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "/nonexistent" in lines[0]
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--debug", "info", "--model", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "CheckpointError" in err


def test_a_misspelt_model_name_gets_a_suggestion_and_writes_nothing(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--model", "smal"]) == 1
    assert "Did you mean 'small'?" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_record_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--out", str(tmp_path / "d")]) == 2
    assert "--env ID --episodes N" in capsys.readouterr().err
    assert main(["record", "--out", str(tmp_path / "d"), "--env", "worldsim/PushWorld-v0"]) == 2
    assert main(["demo", "--out", str(tmp_path / "x"), "--steps", "0"]) == 2


def test_record_pushworld(tmp_path: Path) -> None:
    out = tmp_path / "data"
    proc = worldsim("record", "--env", "worldsim/PushWorld-v0", "--episodes", "2", "--max-steps", "5",
                    "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "2 episodes" in proc.stdout
    data = Dataset(out)
    assert len(data) == 2 and data.episode_lengths == [6, 6] and data.frame_size == (64, 64)
    again = worldsim("record", "--env", "worldsim/PushWorld-v0", "--episodes", "1", "--max-steps", "2",
                     "--out", str(out))
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "already holds a dataset" in again.stderr


def test_demo_on_a_tiny_checkpoint(tiny_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = worldsim("demo", "--out", str(out), "--model", str(tiny_path), "--steps", "4")
    assert proc.returncode == 0, proc.stderr
    assert "untrained" in proc.stdout and "frames/s" in proc.stdout
    for name in ("rollout.mp4", "filmstrip.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["frame_size"] == [16, 16] and summary["trained"] is False
    assert summary["likelihood_space"] == "pixels" and len(summary["rows"]) == 4
    assert [r["action"] for r in summary["rows"]] == ["move right"] * 4
    assert len(summary["real_bits_per_dim"]) == 4


def test_serve_answers_a_remote_client_and_stops_on_sigterm(tiny_path: Path) -> None:
    import signal

    from worldsim.bridges import RemoteWorldModel

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "worldsim.cli", "serve", "--model", str(tiny_path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().startswith("NOTE: checkpoint")  # untrained, and it says so
        line = proc.stdout.readline()
        assert line.startswith("serving WorldModel('tiny'") and "tcp://127.0.0.1:" in line
        endpoint = line.split(" on ")[1].split()[0]
        remote = RemoteWorldModel(endpoint, timeout_s=10.0)
        with remote.session(seed=0) as s:
            s.reset(frames=np.zeros((1, 16, 16, 3), np.uint8))
            assert s.step("stay").frame.shape == (16, 16, 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
