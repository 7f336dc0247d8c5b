"""Calibrated plausibility verdicts: per-frame scores against a reference distribution from real held-out clips.

A frame's surprise is its exact bits/dim given the past (`WorldModel.score`). Alone the number means little; the
calibration stored with a checkpoint (meta.json "calibration") holds the bits/dim of real held-out frames, so
each frame gets a percentile among real frames, a z-score, and a flag when it is above the documented threshold
(by default the 99th percentile of real frames: about 1% false alarms on real video by construction; the
measured rate on other real clips is in `worldsim eval`). Per-patch surprise is standardised per token position
with the same real frames, so a wall patch that is always predictable and an agent patch that is always a little
uncertain are put on one scale: the heat map shows where the frame stops being plausible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import CheckpointError

META_KEY = "calibration"
DEFAULT_PERCENTILE = 99.0
MAX_REFERENCE = 4000  # reference values kept per distribution in meta.json (evenly spaced quantiles beyond)
CALIBRATION_SEED = 20_000  # world seeds of calibration clips: apart from training (1000…) and eval (10000…)


@dataclass(frozen=True)
class Calibration:
    """Reference per-frame scores of real held-out frames.

    first: sorted bits/dim of real first frames (no past, no prompt); next: sorted bits/dim of real frames t ≥ 1
    given their actions; next_no_actions: the same frames scored without actions; token_mean, token_std: (N,)
    per token position, mean and std of the token surprise (−log p, nats) of `next` frames;
    percentile: frames above this percentile of their reference are flagged implausible.
    """

    first: np.ndarray
    next: np.ndarray
    next_no_actions: np.ndarray
    token_mean: np.ndarray
    token_std: np.ndarray
    percentile: float = DEFAULT_PERCENTILE
    source: str = ""

    def reference(self, first: bool, with_actions: bool) -> np.ndarray:
        return self.first if first else self.next if with_actions else self.next_no_actions

    def threshold(self, first: bool, with_actions: bool) -> float:
        """The bits/dim above which a frame is flagged (the `percentile` of its reference)."""
        return float(np.percentile(self.reference(first, with_actions), self.percentile))

    def to_meta(self) -> dict[str, Any]:
        def keep(v: np.ndarray) -> list[float]:
            v = np.sort(np.asarray(v, np.float64))
            if len(v) > MAX_REFERENCE:
                v = np.quantile(v, np.linspace(0, 1, MAX_REFERENCE))
            return [round(float(x), 6) for x in v]

        return {"first": keep(self.first), "next": keep(self.next), "next_no_actions": keep(self.next_no_actions),
                "token_mean": [round(float(x), 5) for x in self.token_mean],
                "token_std": [round(float(x), 5) for x in self.token_std],
                "percentile": self.percentile, "source": self.source, "unit": "bits/dim"}

    @classmethod
    def from_meta(cls, data: Any, tokens: int) -> Calibration:
        """Read meta.json's "calibration" entry; CheckpointError names what is malformed."""
        try:
            arrays = {k: np.sort(np.asarray(data[k], np.float64)) for k in ("first", "next", "next_no_actions")}
            mean, std = (np.asarray(data[k], np.float64) for k in ("token_mean", "token_std"))
            percentile = float(data.get("percentile", DEFAULT_PERCENTILE))
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"meta.json 'calibration' is malformed ({e!r}); expected the dict written by "
                                  "Calibration.to_meta. Fix: recalibrate with worldsim.plausibility.calibrate.") from e
        if any(v.ndim != 1 or len(v) < 2 for v in arrays.values()) or mean.shape != (tokens,) \
                or std.shape != (tokens,) or not 0 < percentile < 100:
            raise CheckpointError(
                f"meta.json 'calibration' does not fit this model: reference sizes "
                f"{ {k: v.shape for k, v in arrays.items()} }, token stats {mean.shape}/{std.shape} for {tokens} "
                f"tokens per frame, percentile {percentile}. Fix: recalibrate with worldsim.plausibility.calibrate.")
        return cls(**arrays, token_mean=mean, token_std=std, percentile=percentile, source=str(data.get("source", "")))


@dataclass
class Verdict:
    """Per frame (T,) or (B, T): percentile among real frames, z-score, threshold used (bits/dim), the flag."""

    percentile: np.ndarray
    z_score: np.ndarray
    threshold_bits_per_dim: np.ndarray
    implausible: np.ndarray
    threshold_percentile: float


def judge(bits_per_dim: np.ndarray, calibration: Calibration, with_actions: bool) -> Verdict:
    """Place each frame's bits/dim (…, T) in its reference distribution (frame 0: `first`, later: `next`)."""
    bpd = np.asarray(bits_per_dim, np.float64)
    pct, z, thr = (np.empty_like(bpd) for _ in range(3))
    for first, sl in ((True, np.s_[..., :1]), (False, np.s_[..., 1:])):
        ref = calibration.reference(first, with_actions)
        pct[sl] = 100.0 * np.searchsorted(ref, bpd[sl], side="right") / len(ref)
        z[sl] = (bpd[sl] - ref.mean()) / max(ref.std(), 1e-12)
        thr[sl] = calibration.threshold(first, with_actions)
    return Verdict(pct, z, thr, bpd > thr, calibration.percentile)


def surprise_z(token_log_prob: np.ndarray, calibration: Calibration | None) -> np.ndarray:
    """Per-token surprise (…, N): −log p standardised per token position when calibrated, raw nats otherwise."""
    surprise = -np.asarray(token_log_prob, np.float64)
    if calibration is None:
        return surprise
    return (surprise - calibration.token_mean) / np.maximum(calibration.token_std, 1e-6)


def calibrate(model: Any, clips: Sequence[np.ndarray], actions: Sequence[Sequence[str]],
              percentile: float = DEFAULT_PERCENTILE, source: str = "", batch: int = 8,
              progress: Any = None) -> Calibration:
    """Reference distributions from real clips (each (T, H, W, 3) uint8 with T-1 actions), scored by `model`.

    Equal-length clips are scored `batch` at a time; `progress` (a tqdm bar or None) is advanced per clip.
    """
    if len(clips) < 2:
        raise ValueError(f"calibration needs at least 2 real clips, got {len(clips)}.")
    first, nxt, nxt_free, tokens = [], [], [], []
    for a in range(0, len(clips), batch):
        group, acts = np.stack(clips[a:a + batch]), [list(x) for x in actions[a:a + batch]]
        with_actions = model.score(group, actions=acts)
        without = model.score(group)
        first.append(with_actions.bits_per_dim[:, 0])
        nxt.append(with_actions.bits_per_dim[:, 1:].ravel())
        nxt_free.append(without.bits_per_dim[:, 1:].ravel())
        tokens.append(-with_actions.token_log_prob[:, 1:].reshape(-1, with_actions.token_log_prob.shape[-1]))
        if progress is not None:
            progress.update(len(group))
    tok = np.concatenate(tokens)
    return Calibration(np.sort(np.concatenate(first)), np.sort(np.concatenate(nxt)),
                       np.sort(np.concatenate(nxt_free)), tok.mean(0), tok.std(0), percentile, source)


def pushworld_calibration(model: Any, episodes: int = 64, length: int = 24, seed: int = CALIBRATION_SEED,
                          progress: Any = None) -> Calibration:
    """`calibrate` on held-out PushWorld clips (world seeds seed, seed+1, …; the eval's scripted policy)."""
    from .worlds import get

    held_out_clip = get("pushworld").extras["held_out_clip"]
    clips = [held_out_clip(model.config.height, seed, i, episodes, length) for i in range(episodes)]
    return calibrate(model, [c.frames for c in clips], [c.actions for c in clips],
                     source=f"PushWorld: {episodes} held-out clips of {length} frames, world seeds from {seed}",
                     progress=progress)


def hottest_patch(surprise: np.ndarray, height: int, width: int) -> tuple[float, float]:
    """(x, y) pixel centre of the most surprising token of one frame's surprise grid (rows, cols)."""
    rows, cols = surprise.shape
    r, c = np.unravel_index(int(np.argmax(surprise)), surprise.shape)
    return (c + 0.5) * width / cols - 0.5, (r + 0.5) * height / rows - 0.5
