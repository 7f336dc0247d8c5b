"""Per-frame image similarity of uint8 RGB frames: PSNR and SSIM."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import InvalidFrames

PEAK = 255.0
K1, K2 = 0.01, 0.03  # SSIM's stabilising constants (Wang et al. 2004)
SIGMA = 1.5  # SSIM's Gaussian window σ
SMALL_FRAME = 32  # frames narrower than this get the 7×7 window instead of 11×11


def _pair(a: np.ndarray, b: np.ndarray, min_side: int = 1) -> tuple[np.ndarray, np.ndarray]:
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim < 3 or x.shape[-1] != 3:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise InvalidFrames(f"{name}: expected uint8 RGB frames (..., H, W, 3); received {got}. "
                                "Fix: pass frames as np.uint8 arrays.")
    if a.shape != b.shape:
        raise InvalidFrames(f"frames to compare differ in shape: {a.shape} vs {b.shape}; expected equal shapes.")
    if min(a.shape[-3:-1]) < min_side:
        raise InvalidFrames(f"frames of {a.shape[-3]}×{a.shape[-2]} px are too small; SSIM needs at least "
                            f"{min_side}×{min_side}.")
    return a.astype(np.float64), b.astype(np.float64)


def mse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared error per frame over H, W and the 3 channels, in (0…255)² units: uint8 (..., H, W, 3) → (...,)."""
    x, y = _pair(a, b)
    return ((x - y) ** 2).mean(axis=(-3, -2, -1))


def psnr_from_mse(error: np.ndarray | float) -> np.ndarray:
    """10·log10(255² / MSE) in dB; inf where the MSE is 0."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(PEAK**2 / np.asarray(error, np.float64))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Peak signal-to-noise ratio in dB per frame: 10·log10(255² / MSE), the MSE over H, W and the 3 channels.

    Args:
        a, b: uint8 (..., H, W, 3) of the same shape.

    Returns:
        float64 (...,); inf where two frames are identical.
    """
    return psnr_from_mse(mse(a, b))


def gaussian_window(size: int, sigma: float = SIGMA) -> np.ndarray:
    """A normalised 1-D Gaussian (size,) centred on the middle tap; the 2-D window is its outer product."""
    r = np.arange(size) - (size - 1) / 2
    w = np.exp(-(r**2) / (2 * sigma**2))
    return w / w.sum()


def window_size(height: int, width: int) -> int:
    """11 (the standard window), or 7 for frames smaller than 32 px on a side."""
    return 11 if min(height, width) >= SMALL_FRAME else 7


def _blur(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of the last two axes: (..., H, W) → (..., H-k+1, W-k+1)."""
    k = len(w)
    x = sliding_window_view(x, k, axis=-2) @ w  # (..., H-k+1, W)
    return sliding_window_view(x, k, axis=-1) @ w


def ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Structural similarity per frame (Wang et al. 2004), computed on each RGB channel and averaged over them.

    The local statistics use a Gaussian window of σ = 1.5, 11×11 (7×7 for frames under 32 px on a side), over
    the positions where the window fits ('valid'); C1 = (0.01·255)², C2 = (0.03·255)². The frame's value is the
    mean of the SSIM map over positions and the three channels.

    Args:
        a, b: uint8 (..., H, W, 3) of the same shape, H and W at least 7.

    Returns:
        float64 (...,) in [-1, 1]; 1.0 where two frames are identical.
    """
    x, y = _pair(a, b, min_side=7)
    w = gaussian_window(window_size(*a.shape[-3:-1]))
    x, y = np.moveaxis(x, -1, -3), np.moveaxis(y, -1, -3)  # (..., 3, H, W)
    mx, my = _blur(x, w), _blur(y, w)
    vx, vy, cxy = _blur(x * x, w) - mx**2, _blur(y * y, w) - my**2, _blur(x * y, w) - mx * my
    c1, c2 = (K1 * PEAK) ** 2, (K2 * PEAK) ** 2
    smap = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return smap.mean(axis=(-3, -2, -1))
