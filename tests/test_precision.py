"""Mixed precision: bfloat16 Jacobi passes far from the fixed point, float32 to finish; the same fixed point within
tol, float32 likelihoods; bf16 scoring close to float32's; "auto" decides by measuring, and says so."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import noisy_heads

import worldsim
from worldsim import ConfigError, WorldModel
from worldsim.precision import resolve


@pytest.fixture(scope="module")
def live() -> WorldModel:
    """tiny with its zero-initialised heads filled with noise, so the flow is far from the identity."""
    return noisy_heads(WorldModel.from_config("tiny", seed=0))


def frames(t: int = 3) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("freeze_prefix", [False, True])
def test_bfloat16_sessions_reach_the_float32_fixed_point(live, freeze_prefix):
    out = {}
    for dtype in ("float32", "bfloat16"):
        with live.session(seed=0, dtype=dtype, tol=1e-5, freeze_prefix=freeze_prefix) as s:
            s.reset(frames=frames(2), actions=["stay"])
            out[dtype] = [s.step(a) for a in ("move left", "move up", "stay")]
        assert s.sampling.low_precision == (dtype == "bfloat16")
    for a, b in zip(out["float32"], out["bfloat16"], strict=True):
        assert np.abs(a.frame.astype(int) - b.frame.astype(int)).max() <= 1
        assert abs(a.log_prob - b.log_prob) < 1e-2 and isinstance(b.reward, float)


def test_bfloat16_scoring_is_close_to_float32(live):
    a = live.score(frames(4), actions=["stay"] * 3)
    b = live.score(frames(4), actions=["stay"] * 3, dtype="bfloat16")
    assert b.log_prob.dtype == np.float32 and np.abs(a.bits_per_dim - b.bits_per_dim).max() < 0.02


def test_auto_measures_and_says_what_it_chose(caplog):
    from worldsim import precision

    precision._auto.clear()
    with caplog.at_level(logging.INFO, logger="worldsim.precision"):
        choice = resolve("auto")
    assert choice in ("float32", "bfloat16") and f"dtype auto: {choice}" in caplog.text
    assert WorldModel.from_config("tiny", dtype="auto").session().settings.dtype == "auto"
    with pytest.raises(ConfigError, match="dtype='bf16' is not supported.*expected one of"):
        resolve("bf16")
    with pytest.raises(ConfigError, match="dtype='half' is not supported"):
        worldsim.WorldModel.from_config("tiny").session(dtype="half")
