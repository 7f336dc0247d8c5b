"""Rooms' detector: which wall colour each column of a frame shows at the horizon (the view's layout), from pixels
alone, for real and imagined frames."""

from __future__ import annotations

from typing import Any

import numpy as np

from .layout import COLOUR_NAMES, GREY, HUES, PALETTE

UNKNOWN = -1  # a column too dark to name
MIN_BRIGHT = 10.0  # brightest channel below this: too dark to read a hue
MIN_SATURATION = 0.3  # (max - min) / max below this: grey (a pillar)
AGREEMENT = 0.75  # two views of one pose agree when at least this share of their columns name the same colour

_CHROMA = PALETTE[:HUES] / PALETTE[:HUES].sum(1, keepdims=True)  # (8, 3) chromaticities of the wall colours


def _check(frame: Any) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or min(frame.shape[:2]) < 4:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise ValueError(f"detect_layout expects an (H, W, 3) frame of at least 4×4; received {got}.")
    return frame


def horizon_colours(frame: np.ndarray) -> np.ndarray:
    """The colour class (PALETTE index, GREY for pillars, UNKNOWN when too dark) of each column's wall at the
    horizon, the middle rows (H/16 of them, at least 2): frame (H, W, 3) uint8 → (W,) int.

    The camera sits at half the wall height, so every column of a Rooms frame shows a wall at the horizon;
    patterns and shading change a wall's brightness, not its hue, so columns are named by chromaticity."""
    h = _check(frame).shape[0]
    band = max(1, h // 32)
    rgb = frame[h // 2 - band:h // 2 + band].astype(np.float32).mean(0)  # (W, 3)
    top, low = rgb.max(1), rgb.min(1)
    chroma = rgb / np.maximum(rgb.sum(1, keepdims=True), 1e-6)
    nearest = np.argmin(((chroma[:, None] - _CHROMA[None]) ** 2).sum(-1), 1)
    grey = (top - low) < MIN_SATURATION * top
    return np.where(top < MIN_BRIGHT, UNKNOWN, np.where(grey, GREY, nearest)).astype(np.int64)


def detect_layout(frame: np.ndarray) -> dict[str, Any]:
    """What a Rooms frame shows: {"columns": (W,) int colour class per column at the horizon (see
    `horizon_colours`), "histogram": (9,) float share of columns per class (PALETTE order; unknown columns in
    none), "dominant": the commonest colour's name (None when no column is named)}."""
    columns = horizon_colours(frame)
    counts = np.bincount(columns[columns >= 0], minlength=len(PALETTE)).astype(np.float64)
    hist = counts / len(columns)
    return {"columns": columns, "histogram": hist,
            "dominant": COLOUR_NAMES[int(np.argmax(counts))] if counts.sum() else None}


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """The share of columns whose horizon colour class (UNKNOWN included) is the same in two frames of one width."""
    ca, cb = horizon_colours(a), horizon_colours(b)
    if ca.shape != cb.shape:
        raise ValueError(f"frames to compare differ in width: {a.shape} vs {b.shape}.")
    return float((ca == cb).mean())
