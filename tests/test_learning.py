"""A real learning test: a tiny model trained briefly on moving squares gets much better held-out bits/dim."""

from __future__ import annotations

from conftest import moving_squares

from worldsim import WorldModel
from worldsim.fit import fit_flow


def test_short_training_lowers_held_out_bits_per_dim_by_30_percent():
    train, train_actions = moving_squares(64, 6, seed=0)
    test, test_actions = moving_squares(8, 6, seed=99)
    wm = WorldModel.from_config("tiny", seed=0)
    before = wm.score(test, actions=test_actions).bits_per_dim.mean()
    fit_flow(wm.net, train, train_actions, steps=300, batch=16, lr=3e-3, seed=0)
    after = wm.score(test, actions=test_actions).bits_per_dim.mean()
    assert after <= 0.7 * before, (before, after)
