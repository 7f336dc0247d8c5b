"""PSNR and SSIM against hand-computed values and a direct (unoptimised) SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worldsim.errors import InvalidFrames
from worldsim.image_metrics import gaussian_window, mse, psnr, psnr_from_mse, ssim, window_size

C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _frames(seed: int, shape=(2, 16, 16, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_identical_frames_are_inf_db_and_ssim_one():
    a = _frames(0)
    assert np.isinf(psnr(a, a)).all() and psnr(a, a).shape == (2,)
    assert np.allclose(ssim(a, a), 1.0)


def test_psnr_of_a_known_error():
    a = np.full((4, 8, 8, 3), 100, np.uint8)
    b = a.copy()
    b[..., ::2, :, :] += 5
    b[..., 1::2, :, :] -= 5  # every pixel off by exactly 5: MSE 25
    assert np.allclose(psnr(a, b), 10 * math.log10(255**2 / 25))  # 34.15 dB
    half = a.copy()
    half[:, :4] = 110  # half the pixels off by 10: MSE 50
    assert np.allclose(psnr(a, half), 10 * math.log10(255**2 / 50))
    assert np.allclose(mse(a, half), 50) and psnr_from_mse(50.0) == pytest.approx(10 * math.log10(255**2 / 50))


def test_ssim_of_flat_frames_is_the_luminance_term():
    a, b = np.full((16, 16, 3), 100, np.uint8), np.full((16, 16, 3), 150, np.uint8)
    expected = (2 * 100 * 150 + C1) / (100**2 + 150**2 + C1)  # no variance: the contrast-structure term is 1
    assert ssim(a, b) == pytest.approx(expected)


def _ssim_direct(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of one frame by explicit loops over window positions and channels."""
    h, w = a.shape[:2]
    k = window_size(h, w)
    g = np.outer(gaussian_window(k), gaussian_window(k))
    values = []
    for c in range(3):
        x, y = a[..., c].astype(float), b[..., c].astype(float)
        for i in range(h - k + 1):
            for j in range(w - k + 1):
                px, py = x[i:i + k, j:j + k], y[i:i + k, j:j + k]
                mx, my = (g * px).sum(), (g * py).sum()
                vx, vy = (g * (px - mx) ** 2).sum(), (g * (py - my) ** 2).sum()
                cxy = (g * (px - mx) * (py - my)).sum()
                values.append((2 * mx * my + C1) * (2 * cxy + C2) / ((mx**2 + my**2 + C1) * (vx + vy + C2)))
    return float(np.mean(values))


@pytest.mark.parametrize("side", [12, 34])
def test_ssim_matches_a_direct_computation(side):
    a = _frames(1, (side, side, 3))
    b = np.clip(a.astype(int) + np.random.default_rng(2).integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, b) == pytest.approx(_ssim_direct(a, b), rel=1e-9)
    assert 0 < ssim(a, b) < 1 and ssim(a, b) == pytest.approx(ssim(b, a))


def test_window_is_11_from_32_px_and_7_below():
    assert window_size(64, 64) == 11 and window_size(32, 40) == 11 and window_size(16, 16) == 7
    assert gaussian_window(11).sum() == pytest.approx(1.0) and gaussian_window(7).argmax() == 3


def test_metrics_keep_leading_axes_and_reject_bad_frames():
    a, b = _frames(3, (2, 3, 16, 16, 3)), _frames(4, (2, 3, 16, 16, 3))
    assert psnr(a, b).shape == ssim(a, b).shape == (2, 3)
    with pytest.raises(InvalidFrames, match=r"differ in shape: \(2, 3, 16, 16, 3\) vs \(16, 16, 3\)"):
        psnr(a, b[0, 0])
    with pytest.raises(InvalidFrames, match="expected uint8 RGB frames.*float64"):
        ssim(a.astype(float), b)
    with pytest.raises(InvalidFrames, match="too small; SSIM needs at least 7×7"):
        ssim(a[..., :6, :6, :], b[..., :6, :6, :])
