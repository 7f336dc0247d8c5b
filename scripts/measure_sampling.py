"""Measure sampling costs of a model (default: the `small` preset, random weights) on this machine.

Prints per-frame time for sequential vs Jacobi inversion (same noise, same state) with the iterations used and the
max difference, per-frame time at a short vs a full context (KV cache + sliding window), and scoring vs generating
frames/s. Interleaved repetitions, medians. Usage: python scripts/measure_sampling.py [--model NAME|PATH] [--reps N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from worldsim import WorldModel, WorldSimError
from worldsim.sampling import SamplerSettings, sample_frame


def context_state(wm: WorldModel, frames: int, seed: int = 0):
    net, cfg = wm.net, wm.config
    gen = torch.Generator().manual_seed(seed)
    state = net.new_state(net.prompt_embeddings([None]))
    acts = net.action_embeddings([["move right"] * frames])
    cond = net.frame_conditions(acts, 1, frames + 1, 0)
    x = torch.randn(1, frames, cfg.tokens_per_frame, cfg.token_dim, generator=gen)
    with torch.no_grad():
        net(x, cond[:, :frames], state)
    z = torch.randn(1, cfg.tokens_per_frame, cfg.token_dim, generator=gen)
    return state, cond[:, frames], z


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default="small", help="a preset (random weights) or a checkpoint path/name")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--perturb", type=float, default=0.05,
                   help="add N(0, perturb²) to every weight of a fresh preset, so no block is the identity")
    a = p.parse_args()
    torch.manual_seed(0)
    try:
        wm = WorldModel.from_config(a.model)
    except WorldSimError:  # not a preset name: a checkpoint
        wm = WorldModel.from_pretrained(a.model)
    else:
        with torch.no_grad():
            for prm in wm.net.parameters():
                prm.add_(a.perturb * torch.randn_like(prm))
    net, cfg = wm.net, wm.config
    print(f"{wm}; threads={torch.get_num_threads()}; torch {torch.__version__}")
    w = cfg.deep.window
    seq, jac, iters, diff, short, long_ = [], [], [], [], [], []
    for rep in range(a.reps + 1):  # the first repetition is a warm-up and is dropped
        state, cond, z = context_state(wm, w - 1)
        out = {}
        for name, s in (("seq", SamplerSettings("sequential")), ("jac", SamplerSettings("jacobi", tol=1e-4))):
            st = state.clone()
            t0 = time.perf_counter()
            out[name] = sample_frame(net, st, cond, z, s)[0]
            (seq if name == "seq" else jac).append(time.perf_counter() - t0)
        iters.append(out["jac"].iterations)
        diff.append(float((out["jac"].x - out["seq"].x).abs().max()))
        for frames, acc in ((1, short), (w - 1, long_)):
            st, c, zz = context_state(wm, frames)
            acc.append(timed(lambda st=st, c=c, zz=zz: sample_frame(net, st, c, zz, SamplerSettings("jacobi"))))
        if rep == 0:
            for acc in (seq, jac, iters, diff, short, long_):
                acc.clear()
    clip = np.random.default_rng(0).integers(0, 256, (1, 4 * w, cfg.height, cfg.width, 3), dtype=np.uint8)
    score_t = statistics.median(timed(lambda: wm.score(clip)) for _ in range(a.reps))
    med = statistics.median
    print(f"sequential inversion: {1e3 * med(seq):.1f} ms/frame ({cfg.tokens_per_frame} token steps + local blocks)")
    print(f"Jacobi inversion:     {1e3 * med(jac):.1f} ms/frame, {med(iters):.0f} deep iterations, "
          f"max |Δx| vs sequential {max(diff):.2e}; speed-up {med(seq) / med(jac):.2f}×")
    print(f"context 1 frame: {1e3 * med(short):.1f} ms/frame; context {w - 1} frames: {1e3 * med(long_):.1f} ms/frame "
          f"(ratio {med(long_) / med(short):.2f})")
    score_fps = 4 * w / score_t
    gen_fps = 1 / med(jac)
    print(f"scoring {score_fps:.1f} frames/s vs generating {gen_fps:.1f} frames/s (ratio {score_fps / gen_fps:.1f})")


if __name__ == "__main__":
    main()
