"""`worldsim bench`: every figure and target in the JSON, FLOPs counted by hand, the CLI as a subprocess (tiny)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from worldsim.bench import SECTIONS, TARGETS, bench, targets
from worldsim.bench_flops import FlopCounter
from worldsim.model.layers import Attention


def test_flop_counter_counts_linear_attention_and_convolution_by_hand():
    lin, att, conv = nn.Linear(4, 6), Attention(8, 2), nn.Conv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        for module, x, want in ((lin, torch.randn(2, 3, 4), 2 * 6 * 4 * 6),
                                (att, torch.randn(1, 5, 8), 2 * 5 * 8 * 24 + 2 * 5 * 8 * 8 + 4 * 5 * 5 * 8),
                                (conv, torch.randn(1, 3, 8, 8), 2 * (4 * 8 * 8) * 3 * 9)):
            with FlopCounter(module) as counter:
                module(x)
            assert counter.pop() == want and counter.flops == 0
        module(x)  # hooks are gone after the counter exits
        assert counter.flops == 0


def test_targets_compare_each_figure_with_its_threshold():
    t = targets({"jacobi_speedup": 8.0, "env_overhead": 1.5, "first_frame_s": 2.0})
    assert set(t) == set(TARGETS)
    assert t["jacobi_speedup"] == {"value": 8.0, "op": ">=", "threshold": 8.0, "pass": True}
    assert t["env_overhead"]["pass"] is False and t["first_frame_s"]["pass"] is True
    assert t["batch_scaling"] == {"value": None, "op": ">=", "threshold": 8.0, "pass": False}  # missing fails


def test_jacobi_and_cache_sections_on_a_tiny_model(tiny):
    r = bench(tiny, quick=True, sections=("machine", "jacobi", "kv_cache"), progress=False)
    jac = r["details"]["jacobi"]
    assert r["jacobi_speedup"] == pytest.approx(jac["sequential_ms"] / jac["jacobi_ms"])
    assert r["jacobi_max_abs_diff"] <= 1e-3  # Jacobi equals the sequential reference on the same noise
    assert 1 <= jac["mean_iterations"] <= tiny.config.tokens_per_frame and jac["break_even_iterations"] > 0
    kv = r["details"]["kv_cache"]
    assert r["kv_cache_window_frames"] == tiny.config.deep.window and r["kv_cache_context_frames"] == [2, 16]
    assert kv["cached_keys"]["16"] > kv["cached_keys"]["2"]  # the window holds more frames, not all 16
    window, slots = tiny.config.deep.window, tiny.config.tokens_per_frame + 1
    assert kv["cached_keys"]["16"] == tiny.config.deep.prompt_tokens + (window - 1) * slots
    assert r["fps"] is None and r["targets"]["realtime_factor"]["pass"] is False  # sections not run: None
    assert r["machine"]["dtype"] == "float32" and r["machine"]["threads"] == torch.get_num_threads()
    with pytest.raises(ValueError, match=r"unknown bench sections \['jacobbi'\]"):
        bench(tiny, sections=("jacobbi",))


def test_bench_cli_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "worldsim.cli", "bench", "--model", "tiny", "--quick",
                           "--threads", "1", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "NOTE: 'tiny' is a preset" in done.stdout and f"wrote {out}" in done.stdout
    assert "target jacobi_speedup >= 8" in done.stdout
    r = json.loads(out.read_text())
    for name in (*TARGETS, "fps"):
        assert isinstance(r[name], float) and math.isfinite(r[name]) and r[name] >= 0, name
    assert r["jacobi_max_abs_diff"] <= 1e-3
    assert r["realtime_factor"] == pytest.approx(r["fps"] / 16)
    gen = r["details"]["generation"]
    assert r["batch_scaling"] == pytest.approx(gen["batch_fps"] / r["fps"]) and gen["batch"] == 32
    assert r["score_over_generate"] == pytest.approx(gen["score_fps"] / r["fps"])
    assert 0 < r["flops_fraction"] < 2 and gen["batch_gflop_per_step"] > 0
    assert set(r["details"]) == set(SECTIONS) and r["machine"]["threads"] == 1 and r["quick"] is True
    assert r["details"]["first_frame"]["step_s"] < r["first_frame_s"]
    assert r["targets_passed"] == sum(t["pass"] for t in r["targets"].values())
    for name, t in r["targets"].items():
        assert t["pass"] == (t["value"] <= t["threshold"] if t["op"] == "<=" else t["value"] >= t["threshold"]), name
