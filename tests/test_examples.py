"""The example scripts (and the scripts/ tools) run as subprocesses with tiny budgets, on a small saved model
(32×32, untrained) where they take one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worldsim import WorldModel, preset

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m32"
    WorldModel.from_config(preset("tiny").merged(height=32, width=32)).save(path)
    return path


def run(script, *args, cwd, folder="examples", returncode=0):
    """stdout of the script (stderr when it is expected to fail with `returncode`)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(ROOT / folder / script), *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == returncode, r.stderr[-2000:]
    return r.stdout if returncode == 0 else r.stderr


def test_rollout_example(model, tmp_path):
    out = run("rollout.py", "--model", str(model), "--steps", "3", "--out", "r.mp4", cwd=tmp_path)
    assert "wrote r.mp4 (4 frames)" in out and (tmp_path / "r.mp4").stat().st_size > 0


def test_what_if_example(model, tmp_path):
    out = run("what_if.py", "--model", str(model), "--frames", "5", "--from-step", "2", "--out", "w", cwd=tmp_path)
    assert "recorded (right) vs replayed from step 2" in out
    assert (tmp_path / "w.png").stat().st_size > 0 and (tmp_path / "w.mp4").stat().st_size > 0


def test_plan_push_example(model, tmp_path):
    out = run("plan_push.py", "--model", str(model), "--episodes", "1", "--steps", "2", "--horizon", "2",
              "--population", "4", "--iterations", "1", "--replan-every", "2", "--replan-near-block", "1",
              "--glance-penalty", "0.25", "--guidance", "1.0", "--push-from", "either", "--glance-zone", "ring",
              "--json", "r.json", cwd=tmp_path)
    assert "random: success" in out and "model: success" in out and "real: success" in out
    assert all(f"{c} task 20000: " in out for c in ("random", "model", "real"))  # each task reported as it ends
    rates = json.loads((tmp_path / "r.json").read_text())["success_rate"]
    assert set(rates) == {"random", "model", "real"} and all(0 <= r <= 1 for r in rates.values())
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["guidance"] == 1.0 and report["push_from"] == "either" and report["glance_zone"] == "ring"
    moved = report["block_progress_px"]
    assert set(moved) == set(rates) and all(abs(m) < 64 for m in moved.values())  # within the 64-px room
    for name, rate in rates.items():  # one task each: its outcome, and an interval that holds the rate
        [task] = report["tasks"][name]
        assert task["seed"] == 20_000 and task["success"] == (rate == 1.0)
        low, high = report["success_interval_95"][name]
        assert 0 <= low <= rate <= high <= 1 and high - low > 0.5  # one task says little


def test_plan_push_search_seed_varies_the_planner_not_the_task(model, tmp_path):
    def report(search_seed, name):
        run("plan_push.py", "--model", str(model), "--episodes", "2", "--steps", "8", "--controllers", "random",
            "--search-seed", str(search_seed), "--json", name, cwd=tmp_path)
        return json.loads((tmp_path / name).read_text())["tasks"]["random"]

    first, again, other = report(0, "a.json"), report(0, "b.json"), report(1, "c.json")
    assert first == again  # a run repeats exactly
    assert [t["start_px"] for t in first] == [t["start_px"] for t in other]  # the same tasks...
    assert [t["seed"] for t in first] == [t["seed"] for t in other] == [20_000, 20_001]
    assert all(len(t["actions"]) == 8 or t["success"] for t in first + other)
    assert [t["actions"] for t in first] != [t["actions"] for t in other]  # ...played with other luck
    err = run("plan_push.py", "--model", str(model), "--json", "nowhere/r.json", cwd=tmp_path, returncode=2)
    assert "--json nowhere/r.json: its folder does not exist" in err  # said before any task runs, not after


def test_planner_spread_pools_runs(model, tmp_path):
    for k in (0, 1):  # two runs of the random controller, one of the real planner
        run("plan_push.py", "--model", str(model), "--episodes", "2", "--steps", "4", "--controllers", "random",
            "--search-seed", str(k), "--json", f"random{k}.json", cwd=tmp_path)
    run("plan_push.py", "--model", str(model), "--episodes", "2", "--steps", "4", "--horizon", "2", "--population",
        "4", "--iterations", "1", "--controllers", "real", "--json", "real.json", cwd=tmp_path)
    reports = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in ("random0", "random1", "real")}
    assert all(r["complete"] for r in reports.values())
    out = run("planner_spread.py", "random0.json", "random1.json", "real.json", "--ratio", "random/real",
              "--target", "0.8", "--out", "s.png", "--json", "s.json", folder="scripts", cwd=tmp_path)
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["tasks"] == [20_000, 20_001] and "tasks finished by every run: 2" in out
    wins = {name: sum(t["success"] for t in next(iter(r["tasks"].values()))) for name, r in reports.items()}
    assert summary["controllers"]["random"]["runs"] == {"0": wins["random0"], "1": wins["random1"]}
    real = summary["controllers"]["real"]
    assert real["runs"] == {"0": wins["real"]} and real["std"] is None  # one run: no spread to report
    assert (tmp_path / "s.png").stat().st_size > 0
    partial = reports["real"] | {"complete": False, "tasks": {"real": reports["real"]["tasks"]["real"][:1]}}
    (tmp_path / "partial.json").write_text(json.dumps(partial))  # a run stopped after its first task
    out = run("planner_spread.py", "random0.json", "partial.json", folder="scripts", cwd=tmp_path)
    assert "tasks finished by every run: 1" in out  # counted only over what every run finished
    (tmp_path / "bad.json").write_text(json.dumps({"success_rate": 0.5}))
    err = run("planner_spread.py", "bad.json", folder="scripts", cwd=tmp_path, returncode=1)
    assert "bad.json: not a plan_push.py --json report" in err
    (tmp_path / "empty.json").write_text(json.dumps(reports["real"] | {"complete": False, "tasks": {"real": []}}))
    err = run("planner_spread.py", "empty.json", folder="scripts", cwd=tmp_path, returncode=1)
    assert "the reports hold no finished task yet" in err


def test_plan_agreement_script(model, tmp_path):
    out = run("plan_agreement.py", "--model", str(model), "--episodes", "1", "--steps", "2", "--horizon", "2",
              "--population", "4", "--iterations", "1", "--replan-every", "1", "--samples", "2", "--json", "a.json",
              folder="scripts", cwd=tmp_path)
    report = json.loads((tmp_path / "a.json").read_text())
    states = report["states"]
    assert len(states) == 2 and [s["step"] for s in states] == [0, 1]  # one planning state per real step
    for s in states:  # the model's pick can only be as good as the real best plan, never better
        assert s["regret"] >= 0 and -1 <= s["rho"] <= 1 and 1 <= s["plans"] <= 4
    assert f"all:    2 states  regret {report['summary']['all']['regret']:.3f}" in out
    out = run("plan_agreement.py", "--model", str(model), "--episodes", "1", "--steps", "2", "--horizon", "2",
              "--population", "4", "--iterations", "1", "--replan-every", "1", "--show", "1", "--out", "s.png",
              "--json", "s.json", "--guidance", "1.0", "--push-from", "behind", folder="scripts", cwd=tmp_path)
    assert "wrote s.png" in out and (tmp_path / "s.png").stat().st_size > 0
    shown = json.loads((tmp_path / "s.json").read_text())
    assert [s["step"] for s in shown["states"]] == [1] and shown["guidance"] == 1.0  # only that one
    assert shown["push_from"] == "behind"


def test_contact_probe_script(model, tmp_path):
    out = run("contact_probe.py", "--model", str(model), "--layouts", "1", "--offsets", "0,7", "--steps", "1",
              "--guidance", "1.0", folder="scripts", cwd=tmp_path)
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [row[0] for row in rows] == ["0", "7"]
    assert all(float(row[1]) > 0 for row in rows)  # the real block moves at both offsets


def test_persistence_strip_script(model, tmp_path):
    out = run("persistence_strip.py", "--model", str(model), "--rollout", "1", "--rollout", "0:2", "--episodes", "2",
              "--end", "4", "--best-of", "2", "--out", "p.png", cwd=tmp_path, folder="scripts")
    lines = out.splitlines()
    assert lines[-1] == "wrote p.png" and (tmp_path / "p.png").stat().st_size
    assert [line.split(" (")[0] for line in lines[:2]] == ["rollout 1", "rollout 0"]
    for line in lines[:2]:
        lost = json.loads(line[line.index("["):line.index("]") + 1])
        assert all(0 <= j < 6 for j in lost)  # indices of the imagined frames (up to 2 + 4 for rollout 0:2)


def test_persistence_strip_rejects_a_bad_window(model, tmp_path):
    err = run("persistence_strip.py", "--model", str(model), "--rollout", "one", "--out", "p.png", cwd=tmp_path,
              folder="scripts", returncode=2)
    assert "--rollout takes i or i:S (integers), got 'one'" in err


def test_score_video_example(model, tmp_path):
    out = run("score_video.py", "--model", str(model), "--frames", "5", "--edit-at", "3", "--out", "s", cwd=tmp_path)
    assert "the block is moved into the" in out and "n/a (uncalibrated model)" in out
    for name in ("real", "edited"):
        report = json.loads((tmp_path / "s" / name / "report.json").read_text())
        assert report["frames"] == 5 and (tmp_path / "s" / name / "report.png").stat().st_size > 0


def test_stream_viewer_example(model, tmp_path):
    out = run("stream_viewer.py", "--model", str(model), "--steps", "4", "--out", "v.mp4", "--no-window", cwd=tmp_path)
    assert "received 4 frames from 1 stream(s); latency ms (arrival - generation): p50" in out and "p99" in out
    assert "wrote v.mp4 (4 frames)" in out and (tmp_path / "v.mp4").stat().st_size > 0


def test_engine_sync_example(model, tmp_path):
    out = run("engine_sync.py", "--model", str(model), "--steps", "4", "--ahead", "2", cwd=tmp_path)
    rows = [line.split() for line in out.splitlines() if line[:4].strip().isdigit()]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4] and "2-ahead error" in out
    for r in rows:  # step, action (1-2 words), log p, bits/dim, and from step 3 the two errors
        words = 2 if r[1] == "stay" else 3
        assert len(r) == words + 2 + 2 * (int(r[0]) > 2) and all(float(x) == float(x) for x in r[words:])


def test_rl_imagination_example(model, tmp_path):
    out = run("rl_imagination.py", "--model", str(model), "--iterations", "1", "--population", "2", "--num-envs", "2",
              "--episode-steps", "2", "--eval-episodes", "2", "--json", "r.json", cwd=tmp_path)
    assert "imagination iteration 1/1" in out and "real world iteration 1/1" in out
    assert "trained on 1 × 2 episodes of ≤ 2 steps (≤ 4 env steps) in each world" in out
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["results"]) == {"imagination", "real", "random"} and report["env_steps"] == 4
    assert all(0 <= r["success"] <= 1 and abs(r["return"]) < 1e3 for r in report["results"].values())
    assert set(report["ratios"]) == {"return", "improvement_over_random", "success"}


def test_attention_split_speed_script(tmp_path):
    out = run("attention_split_speed.py", "--frames", "16", "--batch", "1", "--repeats", "1", cwd=tmp_path,
              folder="scripts")
    assert out.startswith("1 clips x 16 frames, 1 thread(s): windowed chunks ") and out.rstrip().endswith("x)")
