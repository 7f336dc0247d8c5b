"""What the importers share: output staged beside OUT and renamed into place, and vector bounds from data."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..actions import ActionSpec
from ..dataset import MANIFEST
from ..errors import DatasetError

logger = logging.getLogger(__name__)


@contextmanager
def staged_output(out_dir: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """Yield a fresh folder beside `out_dir` to write the dataset into; on success it is renamed to `out_dir`
    (replacing a dataset there only with `overwrite`), on any failure it is deleted, so `out_dir` is never left
    half-written."""
    out = Path(out_dir)
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"{out} exists and is not a folder; choose a new folder for the dataset.")
        if (out / MANIFEST).exists():
            if not overwrite:
                raise DatasetError(f"{out} already holds a dataset ({MANIFEST} exists); choose a new folder, "
                                   "delete it, or pass --overwrite (overwrite=True).")
        elif any(out.iterdir()):
            found = sorted(p.name for p in out.iterdir())[:5]
            raise DatasetError(f"{out} exists and holds files that are not a worldsim dataset ({found}); import "
                               "into a new or empty folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".importing", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        if any(out.iterdir()):  # the dataset being replaced: moved aside first, so a failed rename keeps it
            old = tmp.with_name(tmp.name.replace(".importing", ".replaced"))
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def bounded_spec(data: np.ndarray, low: np.ndarray | None, high: np.ndarray | None, low_from: str, high_from: str,
                 source: dict[str, Any], what: str) -> ActionSpec:
    """The vector spec of actions `data` (N, d): bounds `low`/`high` where given (`*_from` says where they came
    from), else the data's min/max, a constant component widened by 1 on each side. Records the bounds and their
    origin in `source["action_bounds"]`; DatasetError when an action lies outside them."""
    d = data.shape[1]
    flat_from_data = False
    if low is None or high is None:
        dlo, dhi = data.min(axis=0), data.max(axis=0)
        flat = dlo == dhi  # a constant component still needs low < high
        flat_from_data = bool(flat.any())
        dlo, dhi = np.where(flat, dlo - 1.0, dlo), np.where(flat, dhi + 1.0, dhi)
        low, low_from = (dlo, "data") if low is None else (low, low_from)
        high, high_from = (dhi, "data") if high is None else (high, high_from)
        logger.info("%s: action bounds low %s (from %s), high %s (from %s)", what, low.tolist(), low_from,
                    high.tolist(), high_from)
    low, high = np.asarray(low, np.float64).reshape(d), np.asarray(high, np.float64).reshape(d)
    if not (np.isfinite(low).all() and np.isfinite(high).all() and (low < high).all()):
        raise DatasetError(f"{what}: action bounds need finite low < high in every component; have low "
                           f"{low.tolist()} (from {low_from}), high {high.tolist()} (from {high_from}). Fix: pass "
                           "--action-low and --action-high.")
    # compared as the dataset stores them (float32), as DatasetWriter does
    stored, lo32, hi32 = data.astype(np.float32), low.astype(np.float32), high.astype(np.float32)
    outside = (stored < lo32) | (stored > hi32)
    if outside.any():
        n, i = (int(v[0]) for v in np.nonzero(outside))
        raise DatasetError(f"{what}: action component {i} reaches {data[n, i]:g}, outside the bounds "
                           f"[{low[i]:g}, {high[i]:g}] (low from {low_from}, high from {high_from}). Fix: pass "
                           "--action-low/--action-high with bounds that hold every action.")
    source["action_bounds"] = {"low": low.tolist(), "high": high.tolist(), "low_from": low_from,
                               "high_from": high_from}
    if flat_from_data:
        source["action_bounds"]["note"] = "a constant component's data bounds are widened by 1 on each side"
    return ActionSpec.vector(low.tolist(), high.tolist())
