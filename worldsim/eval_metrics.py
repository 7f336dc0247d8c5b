"""Pieces of `worldsim eval` that know no world: open-loop rollouts, batched scoring, AUROC, the filmstrip."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

SCORE_BATCH = 8  # clips per scoring pass (larger batches were slower per clip on 2 CPU cores)
FILMSTRIP_STEPS = (0, 1, 2, 4, 8, 16)
FILMSTRIP_EPISODES = 3


def progress_bar(total: int, desc: str, progress: bool, unit: str = "ep") -> tqdm:
    """A tqdm bar, shown only when `progress` and stderr is a terminal."""
    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=not (progress and sys.stderr.isatty()))


def json_float(x: Any) -> float | None:
    """A JSON-safe float (None for missing or non-finite)."""
    return None if x is None or not np.isfinite(x) else float(x)


def score_clips(model: Any, clips: Sequence[np.ndarray], actions: Sequence[Sequence[Any]],
                bar: tqdm | None = None) -> np.ndarray:
    """Per-frame bits/dim (n, T) of n equal-length clips (T, H, W, 3) under their actions, SCORE_BATCH at a time."""
    out = []
    for a in range(0, len(clips), SCORE_BATCH):
        out.append(model.score(np.stack(clips[a:a + SCORE_BATCH]),
                               actions=[list(row) for row in actions[a:a + SCORE_BATCH]]).bits_per_dim)
        if bar is not None:
            bar.update(len(out[-1]))
    return np.concatenate(out)


def rollout(model: Any, context_frames: np.ndarray, context_actions: Sequence[Any], actions: Sequence[Any],
            seed: int, session: dict[str, Any] | None = None, bar: tqdm | None = None) -> tuple[np.ndarray, float]:
    """Open loop: a session (seed `seed`, extra `session` settings) reset on real frames (c, H, W, 3) and the c - 1
    actions between them, then one imagined frame per action. Returns (len(actions), H, W, 3) uint8 and the
    seconds spent generating."""
    with model.session(seed=seed, **(session or {})) as s:
        s.reset(frames=context_frames, actions=list(context_actions))
        frames, start = [], time.perf_counter()
        for a in actions:
            frames.append(s.step(a).frame)
            if bar is not None:
                bar.update(1)
        return np.stack(frames), time.perf_counter() - start


def lost_for_good_at(seen: np.ndarray) -> int | None:
    """The first frame from which an object is never detected again (None when it is seen in the last frame)."""
    seen = np.asarray(seen, bool)
    if seen.size == 0 or seen[-1]:
        return None
    found = np.flatnonzero(seen)
    return int(found[-1] + 1) if found.size else 0


def auroc(positives: np.ndarray | list[float], negatives: np.ndarray | list[float]) -> float | None:
    """Area under the ROC curve for 'positive scores higher', from average ranks (Mann–Whitney U); ties count ½.

    Returns None when either set is empty.
    """
    pos, neg = np.asarray(positives, np.float64).ravel(), np.asarray(negatives, np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        return None
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("auroc needs finite scores; received NaN or inf.")
    _, inverse, counts = np.unique(np.concatenate([pos, neg]), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]  # 1-based ranks, tied values share their average rank
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def save_filmstrip(path: str | os.PathLike, real: Sequence[np.ndarray], gens: Sequence[np.ndarray], context: int,
                   title: str) -> Path:
    """Per episode (up to 3) a row of real frames at steps 0, 1, 2, 4, 8, 16 above the imagined ones, as a PNG.

    Step 0 is the last context frame (given to both rows); real[e]: (T, H, W, 3) uint8 frames of episode e;
    gens[e]: (horizon, H, W, 3) uint8 frames imagined after real[e][:context].
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    horizon = len(gens[0])
    steps = [k for k in FILMSTRIP_STEPS if k <= horizon]
    n = min(len(real), FILMSTRIP_EPISODES)
    fig = Figure(figsize=(1.1 * len(steps) + 0.9, 2.2 * n + 0.5), dpi=90)
    axes = fig.subplots(2 * n, len(steps), squeeze=False)
    for e in range(n):
        last = context - 1
        for c, k in enumerate(steps):
            fake = real[e][last] if k == 0 else gens[e][k - 1]
            for r, image in ((2 * e, real[e][last + k]), (2 * e + 1, fake)):
                ax = axes[r, c]
                ax.imshow(image, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"step {k}", fontsize=8)
            axes[2 * e, 0].set_ylabel(f"ep {e}\nreal", fontsize=8)
            axes[2 * e + 1, 0].set_ylabel(f"ep {e}\nmodel", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out

