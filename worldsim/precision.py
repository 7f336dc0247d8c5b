"""Compute precision: float32, or bfloat16 where the math tolerates it, chosen by a micro-benchmark for "auto".

bfloat16 runs inside `torch.autocast`: matrix products in bf16, while the affine heads, log-determinants and
everything a likelihood sums stay in float32 (the model computes them so). The sampler uses bf16 only for the
Jacobi passes far from the fixed point and finishes in float32 (see `sampling.invert_deep`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Literal

import torch

from .errors import ConfigError, suggest

log = logging.getLogger(__name__)

Dtype = Literal["float32", "bfloat16", "auto"]
DTYPES: tuple[str, ...] = ("float32", "bfloat16", "auto")
AUTO_MIN_SPEEDUP = 1.5  # "auto" takes bfloat16 when its matmuls are at least this much faster here
_auto: dict[Hashable, str] = {}  # key (a device, or a model) → the choice, measured once per process


def matmul_seconds(dtype: torch.dtype, rows: int = 512, inner: int = 192, cols: int = 768, reps: int = 5,
                   device: str = "cpu") -> float:
    """Best time of one (rows × inner) @ (inner × cols) product in `dtype` (the deep block's shapes)."""
    a = torch.randn(rows, inner, device=device).to(dtype)
    b = torch.randn(inner, cols, device=device).to(dtype)
    best = float("inf")
    for _ in range(reps + 1):  # the first run warms up the kernel
        t = time.perf_counter()
        for _ in range(8):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - t) / 8)
    return best


def resolve(dtype: str, measure: Callable[[str], float] | None = None, key: Hashable = "cpu") -> str:
    """'float32' or 'bfloat16'. For 'auto', `measure(dtype)` gives the seconds of the work that matters (a model's
    own Jacobi pass: `WorldModel.resolve_dtype`); without it, a bare matmul at the model's shapes. bfloat16 is
    chosen when it is at least 1.5× faster, once per `key` and process, and the choice is logged with its reason."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype={dtype!r} is not supported; expected one of {list(DTYPES)}.{suggest(dtype, DTYPES)}")
    if dtype != "auto":
        return dtype
    if key not in _auto:
        timing = measure or (lambda d: matmul_seconds(torch.float32 if d == "float32" else torch.bfloat16))
        speedup = timing("float32") / timing("bfloat16")
        _auto[key] = "bfloat16" if speedup >= AUTO_MIN_SPEEDUP else "float32"
        what = "the model's Jacobi pass" if measure else "matmuls at the model's shapes"
        log.info("dtype auto: %s (in bfloat16, %s ran %.2f× the speed of float32 here; the threshold is %.1f×)",
                 _auto[key], what, speedup, AUTO_MIN_SPEEDUP)
    return _auto[key]


@contextlib.contextmanager
def compute(dtype: str, device_type: str = "cpu") -> Iterator[None]:
    """Run the enclosed model calls in `dtype` ('bfloat16': autocast; 'float32': as they are)."""
    if dtype == "bfloat16":
        with torch.autocast(device_type, dtype=torch.bfloat16):
            yield
    else:
        yield
