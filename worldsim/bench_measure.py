"""The measurements behind `worldsim bench`: each section times its alternatives interleaved, after a warm-up, and
reports medians. Frames and actions come from the real PushWorld, so Jacobi warm starts see real video."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import cast

import numpy as np
import torch
from torch import Tensor

from .bench_flops import FlopCounter
from .model.cache import DeepState
from .sampling import SamplerSettings, sample_frame
from .world_model import WorldModel
from .worlds import get as get_world

BATCH = 32  # sessions stepped together for batch_scaling and flops_fraction
CONTEXTS = (2, 16)  # context frames compared by kv_cache_flatness
FIXED_ITERATIONS = 8  # Jacobi passes per frame in the KV-cache comparison (so only the context length differs)
SCORE_FRAMES = 32  # frames per scored clip


@dataclass(frozen=True)
class Budget:
    """Repetitions per section (each after its own warm-up)."""

    jacobi_reps: int  # sequential vs Jacobi frames, and the context comparison
    rounds: int  # generation rounds: one batch-32 step, one scoring pass and `steps_per_round` batch-1 steps
    steps_per_round: int
    env_pairs: int  # env.step / session.step pairs
    bridge_steps: int
    bridge_clients: int
    first_frame_runs: int  # fresh subprocesses
    matmul_size: int


FULL = Budget(jacobi_reps=9, rounds=5, steps_per_round=8, env_pairs=24, bridge_steps=20, bridge_clients=16,
              first_frame_runs=3, matmul_size=2048)
QUICK = Budget(jacobi_reps=3, rounds=2, steps_per_round=6, env_pairs=8, bridge_steps=4, bridge_clients=16,
               first_frame_runs=1, matmul_size=1024)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ----- real video ---------------------------------------------------------------------------------------------------
def real_clip(model: WorldModel, length: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """A real PushWorld clip at the model's frame size: uint8 (T, H, W, 3) and its T-1 actions.

    Square models of at least 32 px get the world drawn at their size; others a 64 px world resized (area).
    """
    h, w = model.config.height, model.config.width
    side = h if h == w and h >= 32 else 64
    clip = get_world("pushworld").extras["held_out_clip"](side, seed, 0, 1, length)
    frames = clip.frames
    if (side, side) != (h, w):
        import cv2

        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    return frames, list(clip.actions)


@torch.no_grad()
def context_state(model: WorldModel, frames: np.ndarray, actions: list[str], seed: int = 0
                  ) -> tuple[DeepState, Tensor, Tensor]:
    """A deep state holding real frames (σ-noised, as `Session.observe` puts them) and the condition of the frame
    after them (the action after the last frame). Returns (state, cond (1, d), noisy tokens of the last frame).

    Frames that the next frame's window no longer sees are evicted here, as the next step would do first."""
    net, t = model.net, frames.shape[0]
    gen = torch.Generator().manual_seed(seed)
    x = net.encode_frames(torch.from_numpy(np.ascontiguousarray(frames))[None])
    x = x + model.config.noise_std * net.noise(x.shape, gen)
    cond = net.frame_conditions(net.action_embeddings([actions[:t]]), 1, t + 1, 0)
    state = net.new_state(net.prompt_embeddings([None]), frames_hint=model.config.deep.window)
    net(x, cond[:, :t], state)
    state.cache.evict_frames_before(state.next_frame - model.config.deep.window + 1)
    return state, cond[:, t], x[:, -1]


def _noise(model: WorldModel, seed: int) -> Tensor:
    cfg = model.config
    return model.net.noise((1, cfg.tokens_per_frame, cfg.token_dim), torch.Generator().manual_seed(seed))


# ----- sections -------------------------------------------------------------------------------------------------------
def matmul_peak(size: int, reps: int = 5) -> dict:
    """fp32 matmul throughput on this machine (best of reps): the peak flops_fraction is measured against."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = min(timed(lambda: a @ b) for _ in range(reps))
    return {"size": size, "gflops": 2 * size**3 / best / 1e9}


@torch.no_grad()
def jacobi_vs_sequential(model: WorldModel, reps: int) -> dict:
    """Per-frame inversion time, sequential (token by token, the exact reference) vs Jacobi (the model's recommended
    settings, `sampling_defaults`, else the defaults) vs
    Jacobi with the converged prefix frozen (`freeze_prefix`), on the same state and noise; the max |Δ| of each
    Jacobi frame's tokens from the sequential ones; and the measured break-even iteration count K* = N·t₁/t_N of
    the deep block (t₁: a one-token pass, t_N: a whole-frame pass): Jacobi wins while it needs fewer passes."""
    net, n = model.net, model.config.tokens_per_frame
    frames, actions = real_clip(model, 4)
    state, cond, _ = context_state(model, frames[:3], actions)
    _, levels = sample_frame(net, state.clone(), cond, _noise(model, 0), SamplerSettings())  # local warm start
    recommended = {k: v for k, v in model.sampling_defaults.items() if k in ("tol", "max_iter", "chunk",
                                                                              "freeze_prefix")}
    methods = {"sequential": SamplerSettings(method="sequential"), "jacobi": SamplerSettings(**recommended),
               "jacobi_prefix": SamplerSettings(**{**recommended, "freeze_prefix": True})}
    times: dict[str, list[float]] = {m: [] for m in methods}
    diffs: dict[str, list[float]] = {m: [] for m in methods}
    iterations: dict[str, list[float]] = {m: [] for m in methods}
    passes: dict[int, list[float]] = {1: [], n: []}
    prev_u = state.prev_u
    assert prev_u is not None  # context_state observed real frames
    slots = net.deep.segment_inputs(prev_u[:, None], cond[:, None])[:, 0]
    for rep in range(reps + 1):  # repetition 0 is the warm-up
        z, out = _noise(model, rep + 1), {}
        order = list(methods)[rep % 3:] + list(methods)[: rep % 3]
        for name in order:
            st = state.clone()
            t = time.perf_counter()
            out[name] = sample_frame(net, st, cond, z, methods[name], levels)[0]
            times[name].append(time.perf_counter() - t)
        for k in passes:
            st = state.clone()
            passes[k].append(timed(partial(net.deep.frame_params, st, slots[:, :k], 0, commit=False)))
        for name in methods:
            diffs[name].append(float((out[name].x - out["sequential"].x).abs().max()))
            iterations[name].append(out[name].iterations)
        if rep == 0:
            for xs in (*times.values(), *passes.values(), *diffs.values(), *iterations.values()):
                xs.clear()
    seq = median(times["sequential"])
    per = {name: {"ms": 1e3 * median(times[name]), "speedup": seq / median(times[name]),
                  "max_abs_diff": max(diffs[name]), "mean_iterations": float(np.mean(iterations[name]))}
           for name in ("jacobi", "jacobi_prefix")}
    return {"sequential_ms": 1e3 * seq, "jacobi_ms": per["jacobi"]["ms"], "speedup": per["jacobi"]["speedup"],
            "max_abs_diff": per["jacobi"]["max_abs_diff"], "mean_iterations": per["jacobi"]["mean_iterations"],
            "prefix": per["jacobi_prefix"], "tokens_per_frame": n, "tol": methods["jacobi"].tol,
            "one_token_pass_ms": 1e3 * median(passes[1]), "frame_pass_ms": 1e3 * median(passes[n]),
            "break_even_iterations": n * median(passes[1]) / median(passes[n])}


@torch.no_grad()
def kv_cache(model: WorldModel, reps: int) -> dict:
    """Per-frame time after a long vs a short real context, with the Jacobi passes fixed (FIXED_ITERATIONS, tol 0)
    so that only what the cache holds differs. The deep block's window bounds the cache: at 16 frames it holds
    window-1 of them."""
    frames, actions = real_clip(model, max(CONTEXTS) + 1)
    fixed = SamplerSettings(tol=0.0, max_iter=FIXED_ITERATIONS)
    starts = {c: context_state(model, frames[:c], actions) for c in CONTEXTS}
    times: dict[int, list[float]] = {c: [] for c in CONTEXTS}
    for rep in range(reps + 1):
        z = _noise(model, rep)
        for c in (CONTEXTS if rep % 2 else CONTEXTS[::-1]):
            state, cond, _ = starts[c]
            st = state.clone()
            times[c].append(timed(partial(sample_frame, model.net, st, cond, z, fixed)))
        if rep == 0:
            for xs in times.values():
                xs.clear()
    short, long_ = CONTEXTS
    return {"window_frames": model.config.deep.window, "context_frames": list(CONTEXTS),
            "cached_keys": {str(c): starts[c][0].cache.length for c in CONTEXTS},
            "frame_ms": {str(c): 1e3 * median(times[c]) for c in CONTEXTS},
            "fixed_iterations": FIXED_ITERATIONS, "flatness": median(times[long_]) / median(times[short])}


def generation(model: WorldModel, rounds: int, steps_per_round: int, batch: int = BATCH) -> dict:
    """Interleaved rounds of: one step of a batch-`batch` session (FLOPs counted by hand, see FlopCounter), one
    `wm.score` pass over a real clip, and `steps_per_round` steps of a batch-1 session (default settings), each
    followed (or preceded, alternately) by the same step of a batch-1 session with `freeze_prefix`.

    Returns batch-1 frames/s (1 / median step) of both, batch frames/s, scoring frames/s and the batched FLOP/s.
    """
    vocab = model.vocabulary
    frames, actions = real_clip(model, max(SCORE_FRAMES, 2))
    clip = frames[:SCORE_FRAMES]
    starts = np.stack([real_clip(model, 1, seed=i)[0][0] for i in range(batch)])
    one_ms: list[float] = []
    prefix_ms: list[float] = []
    batch_s: list[float] = []
    score_s: list[float] = []
    flops: list[float] = []
    iters: list[float] = []
    with model.session(seed=0) as one, model.session(seed=0, freeze_prefix=True) as fast, \
            model.session(seed=0, batch_size=batch) as many:
        for s in (one, fast):
            s.reset(frames=frames[:1])
        many.reset(frames=starts[:, None])
        counter = FlopCounter(model.net)
        for r in range(rounds + 1):  # round 0 is the warm-up
            acts = [vocab[(i + r) % len(vocab)] for i in range(batch)]
            with counter:
                batch_s.append(timed(partial(many.step, acts)))
            flops.append(counter.pop())
            score_s.append(timed(lambda: model.score(clip, actions=actions[: len(clip) - 1])))
            for k in range(steps_per_round):
                action = actions[(r * steps_per_round + k) % len(actions)]
                for s, times in ((one, one_ms), (fast, prefix_ms))[:: 1 if k % 2 else -1]:
                    t = time.perf_counter()
                    out = s.step(action)
                    times.append(1e3 * (time.perf_counter() - t))
                    if s is one:
                        iters.append(out.info["iterations"])
            if r == 0:
                for xs in (one_ms, prefix_ms, batch_s, score_s, flops, iters):
                    xs.clear()
    fps = 1e3 / median(one_ms)
    return {"fps": fps, "step_ms_p50": median(one_ms), "step_ms_p90": float(np.percentile(one_ms, 90)),
            "fps_freeze_prefix": 1e3 / median(prefix_ms),
            "mean_iterations": float(np.mean(iters)), "steps": len(one_ms),
            "batch": batch, "batch_step_s": median(batch_s), "batch_fps": batch / median(batch_s),
            "score_frames": len(clip), "score_fps": len(clip) / median(score_s),
            "batch_gflop_per_step": float(np.median(flops)) / 1e9,
            "batch_gflops": float(np.median([f / t for f, t in zip(flops, batch_s, strict=True)])) / 1e9}


def env_vs_session(model: WorldModel, pairs: int) -> dict:
    """`worldsim/WorldModel-v0` env.step against `Session.step` on identical work: before each pair the env's
    session is forked (same state, same generator), so both compute the same frame."""
    import gymnasium as gym

    import worldsim.envs  # noqa: F401  (registers the env ids)
    from worldsim.envs.world_model_env import WorldModelEnv

    env = gym.make("worldsim/WorldModel-v0", model=model)
    vocab = model.vocabulary
    env.reset(seed=0)
    env.step(0)  # warm-up (and the env checker's first-step checks)
    ratios, env_ms, session_ms = [], [], []
    try:
        for i in range(pairs):
            session = cast(WorldModelEnv, env.unwrapped).session
            assert session is not None  # the env was reset above
            twin = session.fork()
            a = i % len(vocab)
            run_env = lambda a=a: env.step(a)
            run_session = lambda a=a, twin=twin: twin.step(vocab[a])
            if i % 2:
                te, ts = timed(run_env), timed(run_session)
            else:
                ts, te = timed(run_session), timed(run_env)
            env_ms.append(1e3 * te)
            session_ms.append(1e3 * ts)
            ratios.append(te / ts)
    finally:
        env.close()
    return {"env_step_ms": median(env_ms), "session_step_ms": median(session_ms), "overhead": median(ratios),
            "pairs": pairs}


def bridge(model: WorldModel, steps: int, clients: int) -> dict:
    """`worldsim.bridges.bench.bridge_overhead` (loopback ZeroMQ against in-process), or why it could not run."""
    try:
        from .bridges.bench import bridge_overhead
    except ImportError as exc:
        return {"error": f"worldsim.bridges.bench unavailable: {exc}"}
    return dict(bridge_overhead(model, steps=steps, clients=clients))


_FIRST_FRAME = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import worldsim
t1 = time.perf_counter()
name, frame_path = sys.argv[1], sys.argv[2]
try:
    wm = worldsim.WorldModel.from_config(worldsim.preset(name))
except worldsim.ConfigError:
    wm = worldsim.WorldModel.from_pretrained(name)
t2 = time.perf_counter()
with wm.session(seed=0) as s:
    s.reset(frames=np.load(frame_path))
    t3 = time.perf_counter()
    s.step(wm.vocabulary[0])
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "reset_s": t3 - t2, "step_s": t4 - t3}))
"""


def first_frame(model_source: str, model: WorldModel, runs: int, threads: int | None) -> dict:
    """Cold start in a fresh Python process: import worldsim, load the model, reset from a real frame, one step.

    first_frame_s is the wall time of the whole subprocess (interpreter start included), median over `runs`."""
    env = dict(os.environ)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    walls, phases = [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "frame.npy")
        np.save(path, real_clip(model, 1)[0][:1])
        for _ in range(runs):
            t = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", _FIRST_FRAME, model_source, path], env=env,
                                  capture_output=True, text=True, timeout=600)
            walls.append(time.perf_counter() - t)
            if done.returncode != 0:
                tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
                return {"error": f"the cold-start subprocess failed: {tail[0]}"}
            phases.append(json.loads(done.stdout.strip().splitlines()[-1]))
    best = int(np.argsort(walls)[len(walls) // 2])  # the median run's phases
    return {"seconds": median(walls), "runs": runs, **phases[best]}


def machine(threads: int) -> dict:
    """Facts that make the figures comparable across machines."""
    cpu, flags = "unknown", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and cpu == "unknown":
                    cpu = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        import platform

        cpu = platform.processor() or platform.machine()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
            "logical_cpus": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "mkldnn": torch.backends.mkldnn.is_available(), "dtype": "float32", "python": sys.version.split()[0],
            "load_average_1min": None if load is None else load[0]}
