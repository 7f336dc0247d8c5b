"""`worldsim bench`: speed as ratios measured side by side in one process, each checked against its target."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from . import bench_measure as m
from .bench_precision import precision
from .dataset import atomic_write
from .world_model import WorldModel

logger = logging.getLogger(__name__)

REALTIME_FPS = 16  # the world's frame rate: realtime_factor = fps / 16
# name: (op, threshold): the bar each headline figure is checked against
TARGETS: dict[str, tuple[str, float]] = {
    "jacobi_speedup": (">=", 8.0), "jacobi_max_abs_diff": ("<=", 1e-3), "kv_cache_flatness": ("<=", 1.3),
    "score_over_generate": (">=", 20.0), "batch_scaling": (">=", 8.0), "flops_fraction": (">=", 0.30),
    "env_overhead": ("<=", 1.02), "bridge_overhead": ("<=", 1.10), "realtime_factor": (">=", 1.0),
    "first_frame_s": ("<=", 3.0), "population_scaling": (">=", 5.0), "score_fps": (">=", 500.0),
    "flops_fraction_bf16": (">=", 0.30),
}
SECTIONS = ("machine", "matmul", "jacobi", "kv_cache", "generation", "precision", "env", "bridge", "first_frame")


def targets(r: dict) -> dict:
    """Each target as {value, op, threshold, pass}; a missing value fails."""
    out = {}
    for name, (op, threshold) in TARGETS.items():
        value = r.get(name)
        ok = value is not None and (value <= threshold if op == "<=" else value >= threshold)
        out[name] = {"value": value, "op": op, "threshold": threshold, "pass": bool(ok)}
    return out


def bench(model: WorldModel, source: str = "model", quick: bool = False, threads: int | None = None,
          progress: bool = True, sections: tuple[str, ...] = SECTIONS) -> dict:
    """Measure `model`'s speed on this machine; ratios compare across machines, absolute figures don't.

    Args:
        model: the model to measure (its frames come from the real PushWorld, resized for non-64-px models).
        source: how the model was named (a bundled name, a path or a preset); the cold-start subprocess loads it.
        quick: about a minute: fewer repetitions, smaller matmul calibration, 4 bridge steps.
        threads: torch CPU threads for the run (and OMP_NUM_THREADS of the cold-start subprocess); None keeps them.
        progress: a tqdm bar over the sections (only when stderr is a terminal).
        sections: the subset of SECTIONS to run (the rest report None).

    Returns:
        A JSON-ready dict. Headline figures (each also under `targets` with its threshold):
        - jacobi_speedup: sequential inversion time / Jacobi time per frame (same state and noise, default Jacobi
          settings), jacobi_max_abs_diff: the max |Δ| between their frames' tokens over the repetitions.
        - kv_cache_flatness: per-frame time after 16 real context frames / after 2, Jacobi passes fixed; the deep
          block's window (kv_cache_window_frames) bounds what the cache holds.
        - score_over_generate: frames/s of `wm.score` on a 32-frame clip / frames/s generated (batch 1).
        - batch_scaling: frames/s of a batch-32 session / of a batch-1 session (interleaved).
        - flops_fraction: FLOP/s of the batch-32 steps (linear, attention and convolution FLOPs counted by hand)
          / the fp32 matmul peak measured in the same run.
        - env_overhead: `worldsim/WorldModel-v0` env.step / Session.step on identical work.
        - bridge_overhead: a step through the ZeroMQ bridge on loopback / in process (`worldsim.bridges.bench`).
        - fps (one batch-1 session, default settings), realtime_factor = fps / 16, first_frame_s (a fresh process
          imports worldsim, loads the model, resets from a frame and steps once; wall time).
        - dtype (what dtype="auto" picks here), fps_bfloat16, population_scaling (frames/s of a 64-world population
          over one session's, in the chosen dtype), score_fps, flops_fraction_bf16 (against the bf16 matmul peak)
          and max_abs_delta_bits_per_dim (bf16 scoring against fp32 on a real clip): the precision section.
        - jacobi_prefix_speedup, jacobi_prefix_max_abs_diff and fps_freeze_prefix: the same for the frozen-prefix
          Jacobi policy (`Session(freeze_prefix=True)`), measured beside the default.
        `details` holds every section's raw figures; `machine` the CPU, threads, torch version and dtype.
    """
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise ValueError(f"unknown bench sections {unknown}; expected some of {list(SECTIONS)}")
    start, before = time.perf_counter(), torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    budget = m.QUICK if quick else m.FULL
    cfg = model.config
    runs = {
        "machine": lambda: m.machine(torch.get_num_threads()),
        "matmul": lambda: m.matmul_peak(budget.matmul_size),
        "jacobi": lambda: m.jacobi_vs_sequential(model, budget.jacobi_reps),
        "kv_cache": lambda: m.kv_cache(model, budget.jacobi_reps),
        "generation": lambda: m.generation(model, budget.rounds, budget.steps_per_round),
        "precision": lambda: precision(model, budget.rounds, budget.steps_per_round),
        "env": lambda: m.env_vs_session(model, budget.env_pairs),
        "bridge": lambda: m.bridge(model, budget.bridge_steps, budget.bridge_clients),
        "first_frame": lambda: m.first_frame(source, model, budget.first_frame_runs, threads),
    }
    details: dict[str, Any] = {}
    try:
        todo = [s for s in SECTIONS if s in sections]
        with tqdm(todo, desc="bench", unit="section", leave=False,
                  disable=not (progress and sys.stderr.isatty())) as bar:
            for name in bar:
                bar.set_postfix_str(name)
                details[name] = runs[name]()
                logger.info("bench %s: %s", name, details[name])
    finally:
        torch.set_num_threads(before)
    result = summarize(details)
    result.update({
        "model": {"source": source, "name": cfg.name, "height": cfg.height, "width": cfg.width, "fps": cfg.fps,
                  "tokens_per_frame": cfg.tokens_per_frame, "token_dim": cfg.token_dim,
                  "deep": f"{cfg.deep.layers} layers, width {cfg.deep.width}, window {cfg.deep.window} frames",
                  "parameters": sum(p.numel() for p in model.net.parameters()),
                  "trained": bool(model.meta.get("trained", False))},
        "quick": quick,
        "details": details,
        "wall_time_s": time.perf_counter() - start,
    })
    result["targets"] = targets(result)
    result["targets_passed"] = sum(t["pass"] for t in result["targets"].values())
    return result


def summarize(d: dict[str, Any]) -> dict[str, Any]:
    """The headline figures from the sections' details (None where a section did not run or failed)."""
    get = lambda section, key: (d.get(section) or {}).get(key)
    r: dict[str, Any] = {"machine": d.get("machine")}
    r["jacobi_speedup"] = get("jacobi", "speedup")
    r["jacobi_max_abs_diff"] = get("jacobi", "max_abs_diff")
    prefix = get("jacobi", "prefix") or {}
    r["jacobi_prefix_speedup"], r["jacobi_prefix_max_abs_diff"] = prefix.get("speedup"), prefix.get("max_abs_diff")
    r["kv_cache_flatness"] = get("kv_cache", "flatness")
    r["kv_cache_window_frames"] = get("kv_cache", "window_frames")
    r["kv_cache_context_frames"] = get("kv_cache", "context_frames")
    fps, batch_fps, score_fps = (get("generation", k) for k in ("fps", "batch_fps", "score_fps"))
    gflops, peak = get("generation", "batch_gflops"), get("matmul", "gflops")
    r["fps"] = fps
    r["fps_freeze_prefix"] = get("generation", "fps_freeze_prefix")
    r["realtime_factor"] = None if fps is None else fps / REALTIME_FPS
    r["score_over_generate"] = None if fps is None else score_fps / fps
    r["batch_scaling"] = None if fps is None else batch_fps / fps
    r["flops_fraction"] = None if gflops is None or peak is None else gflops / peak
    low = get("precision", "bfloat16") or {}
    chosen = get("precision", get("precision", "auto_dtype") or "float32") or {}
    r["dtype"] = get("precision", "auto_dtype")  # what dtype="auto" picks on this machine
    r["fps_bfloat16"] = low.get("fps")
    r["population_scaling"] = chosen.get("population_scaling")  # 64 imagined worlds' frames/s over one session's
    r["score_fps"] = chosen.get("score_fps")
    r["flops_fraction_bf16"] = low.get("flops_fraction")  # the bf16 population's FLOP/s over the bf16 matmul peak
    r["max_abs_delta_bits_per_dim"] = get("precision", "max_abs_delta_bits_per_dim")  # bf16 scoring vs fp32
    r["env_overhead"] = get("env", "overhead")
    r["bridge_overhead"] = get("bridge", "bridge_overhead")
    r["first_frame_s"] = get("first_frame", "seconds")
    return r


# ----- CLI hooks ------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `worldsim bench`."""
    parser.add_argument("--model", default="pushworld-64",
                        help="bundled model name, checkpoint directory, or preset name (untrained); "
                             "default: %(default)s")
    parser.add_argument("--json", required=True, help="write the figures to this JSON file")
    parser.add_argument("--quick", action="store_true", help="about a minute: fewer repetitions")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, e.g. OMP_NUM_THREADS)")


def _fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}e}{unit}" if abs(value) < 1e-2 and value != 0 else f"{value:.{digits}f}{unit}"


def _precision_rows(p: dict) -> list[tuple[str, str]]:
    """The precision section side by side: float32 | bfloat16."""
    if not p:
        return []
    both = lambda key, unit="", digits=1: " | ".join(  # noqa: E731
        _fmt((p.get(d) or {}).get(key), unit, digits) for d in ("float32", "bfloat16"))
    return [("precision (fp32 | bf16)", f"auto picks {p.get('auto_dtype')}; matmul peak "
                                        f"{both('matmul_peak_gflops', ' GFLOP/s', 0)}"),
            ("  one session", f"{both('fps', ' frames/s')}, {both('mean_passes', ' passes')}"),
            (f"  population of {p.get('population')}", f"{both('population_fps', ' frames/s')}, scaling "
                                                       f"{both('population_scaling', '×')}, of its peak "
                                                       f"{both('flops_fraction', '', 2)}"),
            ("  scoring", f"{both('score_fps', ' frames/s', 0)}, max |Δ bits/dim| "
                          f"{_fmt(p.get('max_abs_delta_bits_per_dim'))}")]


def format_table(r: dict) -> str:
    """A short human-readable summary of a bench() result."""
    d = r["details"]
    mach = r.get("machine") or {}
    jac, kv, gen = d.get("jacobi") or {}, d.get("kv_cache") or {}, d.get("generation") or {}
    first, frame_ms, prefix = d.get("first_frame") or {}, kv.get("frame_ms") or {}, jac.get("prefix") or {}
    rows = [
        ("machine", f"{mach.get('cpu', '?')}, {mach.get('threads', '?')} threads, torch {mach.get('torch', '?')}, "
                    f"{mach.get('dtype', '?')}, load {_fmt(mach.get('load_average_1min'))}"),
        ("fp32 matmul peak", _fmt((d.get("matmul") or {}).get("gflops"), " GFLOP/s", 1)),
        ("generation (batch 1)", f"{_fmt(r['fps'], ' frames/s', 1)}, {_fmt(gen.get('step_ms_p50'), ' ms', 1)} p50, "
                                 f"{_fmt(gen.get('mean_iterations'), '', 1)} Jacobi iterations; frozen prefix "
                                 f"{_fmt(gen.get('fps_freeze_prefix'), ' frames/s', 1)}"),
        ("sequential vs Jacobi", f"{_fmt(jac.get('sequential_ms'), ' ms', 1)} vs {_fmt(jac.get('jacobi_ms'), ' ms', 1)}"
                                 f" per frame (break-even {_fmt(jac.get('break_even_iterations'), ' iterations', 1)})"),
        ("Jacobi, frozen prefix", f"{_fmt(prefix.get('ms'), ' ms', 1)} per frame, speed-up "
                                  f"{_fmt(prefix.get('speedup'), '×', 2)}, max |Δ| {_fmt(prefix.get('max_abs_diff'))}"),
        ("per frame after 2 vs 16 frames", f"{_fmt(frame_ms.get('2'), ' ms', 1)} vs "
                                           f"{_fmt(frame_ms.get('16'), ' ms', 1)} "
                                           f"(window {kv.get('window_frames', '?')} frames)"),
        ("batch 32", f"{_fmt(gen.get('batch_fps'), ' frames/s', 1)}, {_fmt(gen.get('batch_gflops'), ' GFLOP/s', 1)}"),
        ("scoring", _fmt(gen.get("score_fps"), " frames/s", 1)),
        *_precision_rows(d.get("precision") or {}),
        ("first frame (cold)", f"{_fmt(r['first_frame_s'], ' s')} (import {_fmt(first.get('import_s'), ' s')}, "
                               f"load {_fmt(first.get('load_s'), ' s')}, step {_fmt(first.get('step_s'), ' s')})"),
        ("wall time", _fmt(r["wall_time_s"], " s", 1)),
    ]
    rows += [(f"target {name} {t['op']} {t['threshold']:g}",
              f"{_fmt(t['value'], '', 3)}  {'pass' if t['pass'] else 'FAIL'}") for name, t in r["targets"].items()]
    rows += [(f"{name} error", sec["error"]) for name, sec in d.items() if isinstance(sec, dict) and "error" in sec]
    load, cpus = mach.get("load_average_1min"), mach.get("logical_cpus")
    if load is not None and cpus and load > cpus - 0.5:
        rows.append(("note", f"other processes were running when the run began ({load:.1f} runnable on {cpus} CPUs), "
                             "so absolute times are noisy (compare the ratios)"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run(args: argparse.Namespace) -> int:
    """`worldsim bench`: load the model, measure, write the JSON, print a table."""
    from .demo import load_model

    if args.threads is not None and args.threads < 1:
        args.subparser.error(f"--threads must be >= 1, got {args.threads}")
    model, note = load_model(args.model)
    if note:
        print(note, flush=True)
    result = bench(model, source=str(args.model), quick=args.quick, threads=args.threads)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write((json.dumps(result, indent=2) + "\n").encode()))
    print(format_table(result))
    print(f"wrote {path}")
    return 0
