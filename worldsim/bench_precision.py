"""`worldsim bench`'s precision section: float32 against bfloat16 on the same work, interleaved, in one process.

One session's frames/s, a CEM-sized population (one batched fork of 64 worlds) against one session, scoring
frames/s and its largest |Δ bits/dim|, the bf16 matmul peak beside the fp32 one, and the FLOP/s fraction of the
batched steps against the bf16 peak. `dtype` is what "auto" chooses on this machine.
"""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import torch

from .bench_flops import FlopCounter
from .bench_measure import median, real_clip, timed
from .precision import matmul_seconds
from .world_model import WorldModel

POPULATION = 64
SCORE_FRAMES = 32
PEAK_SHAPE = (4096, 192, 768)  # rows × inner × cols: a population's token rows through a deep-block linear layer


def peak_gflops(dtype: torch.dtype, reps: int) -> float:
    rows, inner, cols = PEAK_SHAPE
    return 2 * rows * inner * cols / matmul_seconds(dtype, rows, inner, cols, reps) / 1e9


def precision(model: WorldModel, rounds: int, steps: int) -> dict:
    """Interleaved rounds (round 0 warms up) of, per dtype: `steps` steps of one session, one step of a population
    of 64 (FLOPs counted), one `wm.score` pass over a real clip."""
    frames, actions = real_clip(model, max(SCORE_FRAMES, 2))
    clip, acts = frames[:SCORE_FRAMES], actions[: SCORE_FRAMES - 1]
    dtypes = ("float32", "bfloat16")
    one_ms: dict[str, list[float]] = {d: [] for d in dtypes}
    pop_s: dict[str, list[float]] = {d: [] for d in dtypes}
    pop_flops: dict[str, list[float]] = {d: [] for d in dtypes}
    score_s: dict[str, list[float]] = {d: [] for d in dtypes}
    passes: dict[str, list[int]] = {d: [] for d in dtypes}
    sessions = {d: model.session(seed=0, dtype=d) for d in dtypes}
    for s in sessions.values():
        s.reset(frames=frames[:1])
    counter = FlopCounter(model.net)
    for r in range(rounds + 1):
        for d in dtypes if r % 2 else dtypes[::-1]:
            s = sessions[d]
            for k in range(steps):
                t = time.perf_counter()
                result = s.step(actions[(r * steps + k) % len(actions)])
                one_ms[d].append(1e3 * (time.perf_counter() - t))
                passes[d].append(int(result.info["iterations"]))
            population = s.fork(seed=r, batch_size=POPULATION)
            plan = [actions[(i + r) % len(actions)] for i in range(POPULATION)]
            with counter:
                pop_s[d].append(timed(partial(population.step, plan)))
            pop_flops[d].append(counter.pop())
            population.close()
            score_s[d].append(timed(partial(model.score, clip, actions=acts, dtype=d)))
        if r == 0:
            for table in (one_ms, pop_s, pop_flops, score_s, passes):
                for xs in table.values():
                    xs.clear()
    for s in sessions.values():
        s.close()
    exact = model.score(clip, actions=acts, dtype="float32").bits_per_dim
    low = model.score(clip, actions=acts, dtype="bfloat16").bits_per_dim
    reps = 3
    peak = {"float32": peak_gflops(torch.float32, reps), "bfloat16": peak_gflops(torch.bfloat16, reps)}
    out: dict = {"auto_dtype": model.resolve_dtype("auto"), "population": POPULATION, "score_frames": len(clip),
                 "peak_shape": list(PEAK_SHAPE), "max_abs_delta_bits_per_dim": float(np.abs(exact - low).max())}
    for d in dtypes:
        fps = 1e3 / median(one_ms[d])
        pop_fps = POPULATION / median(pop_s[d])
        gflops = float(np.median([f / t for f, t in zip(pop_flops[d], pop_s[d], strict=True)])) / 1e9
        out[d] = {"fps": fps, "mean_passes": float(np.mean(passes[d])), "population_fps": pop_fps,
                  "population_scaling": pop_fps / fps, "score_fps": len(clip) / median(score_s[d]),
                  "population_gflops": gflops, "matmul_peak_gflops": peak[d],
                  "flops_fraction": gflops / peak[d]}
    out["bfloat16"]["flops_fraction_of_fp32_peak"] = out["bfloat16"]["population_gflops"] / peak["float32"]
    return out
