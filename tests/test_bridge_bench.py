"""`bridge_overhead` (for `worldsim bench`) runs on a tiny model and returns its documented figures."""

from __future__ import annotations

import math

import pytest

from worldsim.bridges.bench import bridge_overhead

KEYS = {"bridge_step_ms", "inprocess_step_ms", "bridge_overhead", "fps_1_client", "fps_16_clients", "concurrency_gain"}


def test_bridge_overhead_figures(tiny):
    out = bridge_overhead(tiny, steps=3, clients=3)
    assert set(out) == KEYS and all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in out.values())
    assert out["bridge_overhead"] == pytest.approx(out["bridge_step_ms"] / out["inprocess_step_ms"])
    assert out["concurrency_gain"] == pytest.approx(out["fps_16_clients"] / out["fps_1_client"])
    with pytest.raises(ValueError, match="need steps ≥ 1 and clients ≥ 1; received steps=0"):
        bridge_overhead(tiny, steps=0)
