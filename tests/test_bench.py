"""`worldsim bench`: every figure and target in the JSON, FLOPs counted by hand, the CLI as a subprocess (tiny);
the frozen-prefix Jacobi policy it compares equals the sequential reference and keeps the KV cache consistent."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_sampling import start  # the same random-context start as the sampling tests
from torch import nn

from worldsim.bench import SECTIONS, TARGETS, bench, targets
from worldsim.bench_flops import FlopCounter
from worldsim.model.layers import Attention
from worldsim.sampling import SamplerSettings, invert_deep, sample_frame


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
    for name in (*TARGETS, "fps", "fps_freeze_prefix", "jacobi_prefix_speedup", "jacobi_prefix_max_abs_diff"):
        assert isinstance(r[name], float) and math.isfinite(r[name]) and r[name] >= 0, name
    assert r["jacobi_max_abs_diff"] <= 1e-3 and r["jacobi_prefix_max_abs_diff"] <= 1e-3
    assert r["realtime_factor"] == pytest.approx(r["fps"] / 16)
    gen = r["details"]["generation"]
    assert r["batch_scaling"] == pytest.approx(gen["batch_fps"] / r["fps"]) and gen["batch"] == 32
    assert r["score_over_generate"] == pytest.approx(gen["score_fps"] / r["fps"])
    assert 0 < r["flops_fraction"] < 2 and gen["batch_gflop_per_step"] > 0
    assert set(r["details"]) == set(SECTIONS) and r["machine"]["threads"] == 1 and r["quick"] is True
    prec = r["details"]["precision"]
    assert r["dtype"] in ("float32", "bfloat16") and r["dtype"] == prec["auto_dtype"]
    assert r["population_scaling"] == pytest.approx(prec[r["dtype"]]["population_fps"] / prec[r["dtype"]]["fps"])
    assert r["flops_fraction_bf16"] == pytest.approx(prec["bfloat16"]["population_gflops"] /
                                                     prec["bfloat16"]["matmul_peak_gflops"])
    assert r["score_fps"] > 0 and 0 <= r["max_abs_delta_bits_per_dim"] < 0.1 and r["fps_bfloat16"] > 0
    assert "population of 64" in done.stdout
    assert r["details"]["first_frame"]["step_s"] < r["first_frame_s"]
    assert r["targets_passed"] == sum(t["pass"] for t in r["targets"].values())
    for name, t in r["targets"].items():
        assert t["pass"] == (t["value"] <= t["threshold"] if t["op"] == "<=" else t["value"] >= t["threshold"]), name


# ----- the frozen-prefix Jacobi policy the bench compares (SamplerSettings.freeze_prefix) ---------------------------
@pytest.mark.parametrize("chunk", [None, 5])
@pytest.mark.parametrize("guidance", [0.0, 1.5])
def test_frozen_prefix_jacobi_equals_sequential(tiny, chunk, guidance):
    state, cond, z = start(tiny, guided=guidance > 0)
    seq_state, jac_state = state.clone(), state.clone()
    ref, _ = sample_frame(tiny.net, seq_state, cond, z, SamplerSettings(method="sequential", guidance=guidance))
    jac, _ = sample_frame(tiny.net, jac_state, cond, z,
                          SamplerSettings(tol=1e-6, chunk=chunk, guidance=guidance, freeze_prefix=True))
    assert (jac.x - ref.x).abs().max() <= 1e-3 and (jac.u - ref.u).abs().max() <= 1e-3
    assert (jac.log_prob - ref.log_prob).abs().max() <= 1e-2 and (jac.h_end - ref.h_end).abs().max() <= 1e-3
    assert jac.iterations < 4 * ref.iterations
    # the cache holds the same keys: the next frame comes out the same
    assert jac_state.cache.length == seq_state.cache.length
    nxt = [sample_frame(tiny.net, st, cond, z, SamplerSettings(method="sequential", guidance=guidance))[0].x
           for st in (seq_state, jac_state)]
    assert (nxt[0] - nxt[1]).abs().max() <= 1e-3


def test_frozen_prefix_generation_equals_an_uncached_parallel_pass(tiny):
    """Frames generated with the frozen prefix (sliding window included) map back to their noise in one pass."""
    net, cfg = tiny.net, tiny.config
    b, steps = 2, cfg.deep.window + 2
    gen = torch.Generator().manual_seed(0)
    emb = net.prompt_embeddings(["room"] * b)
    cond = net.frame_conditions(net.action_embeddings([["move up", "stay"] * steps] * b), b, 2 * steps + 1, 0)
    state, xs, zs, lps = net.new_state(emb), [], [], []
    for t in range(steps):
        z = torch.randn(b, cfg.tokens_per_frame, cfg.token_dim, generator=gen)
        s, _ = sample_frame(net, state, cond[:, t], z, SamplerSettings(tol=1e-7, freeze_prefix=True))
        xs.append(s.x)
        zs.append(z)
        lps.append(s.log_prob)
    with torch.no_grad():
        out = net(torch.stack(xs, 1), cond[:, :steps], net.new_state(emb))
    assert (out.z - torch.stack(zs, 1)).abs().max() <= 1e-4
    np.testing.assert_allclose(out.log_prob.numpy(), torch.stack(lps, 1).numpy(), rtol=1e-5)


def test_a_capped_frozen_prefix_keeps_the_cache_consistent(tiny):
    """Stopped by max_iter before converging, the frame's cached keys and its (mean, log σ) are those a forward
    pass computes at the returned values."""
    state, cond, z = start(tiny)
    st, ref = state.clone(), state.clone()
    u, mean, logs, _, iters = invert_deep(tiny.net, st, cond, z, SamplerSettings(tol=1e-9, max_iter=2,
                                                                                  freeze_prefix=True))
    with torch.no_grad():
        z_fwd, _, _ = tiny.net.deep(u[:, None], cond[:, None], ref)
    assert bool((iters == 2).all()) and (z_fwd[:, 0] - z).abs().max() > 1e-2  # not converged
    assert st.cache.length == ref.cache.length
    n = ref.cache.length
    for mine, theirs in zip(st.cache.k + st.cache.v, ref.cache.k + ref.cache.v, strict=True):
        assert (mine[:, :, :n] - theirs[:, :, :n]).abs().max() <= 1e-5
    assert ((u - mean) * torch.exp(-logs) - z_fwd[:, 0]).abs().max() <= 1e-4
