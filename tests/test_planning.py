"""CEM, MPPI and random shooting over batched forks of a real (tiny) session and over a plain simulator."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.errors import ConfigError
from worldsim.planning import (
    cem,
    cem_search,
    goal_frame,
    mpc_action,
    mppi,
    mppi_search,
    plausible,
    predicted_reward,
    random_shooting,
)


def session(wm, reward_fn=None):
    s = wm.session(seed=0, reward_fn=reward_fn)
    s.reset(frames=np.zeros((1, 16, 16, 3), np.uint8))
    return s


def test_cem_finds_the_rewarded_sequence(tiny):
    s = session(tiny, reward_fn=lambda frame, action: float(action == "move up"))
    plan = cem(s, predicted_reward, horizon=3, population=32, elites=4, iterations=4, seed=0)
    assert plan.actions == ["move up"] * 3 and plan.score == 3.0
    assert len(s.history) == 1  # planning does not advance the session
    assert mpc_action(s, predicted_reward, horizon=3, population=32, iterations=4) == "move up"


def test_goal_and_plausibility_objectives_score_each_imagined_world(tiny):
    s = session(tiny)
    world = s.fork(batch_size=4)
    out = world.step(["stay", "move up", "move left", "stay"])
    goal = goal_frame(np.zeros((16, 16, 3), np.uint8))(out, 0)
    assert goal.shape == (4,) and (goal <= 0).all()
    penalised = plausible(goal_frame(np.zeros((16, 16, 3), np.uint8)), 0.5)(out, 0)
    np.testing.assert_allclose(penalised, goal - 0.5 * np.asarray(out.bits_per_dim))


def test_cem_rejects_bad_settings(tiny):
    with pytest.raises(ConfigError, match="elites ≤ population"):
        cem(session(tiny), predicted_reward, population=4, elites=8)


def test_mppi_finds_the_rewarded_sequence_in_imagination(tiny):
    s = session(tiny, reward_fn=lambda frame, action: float(action == "move left"))
    plan = mppi(s, predicted_reward, horizon=3, population=32, iterations=3, temperature=0.5, seed=0)
    assert plan.actions == ["move left"] * 3 and plan.score == 3.0 and len(plan.history) == 3
    assert len(s.history) == 1  # planning does not advance the session


VOCAB = ["move up", "move down", "move left", "move right", "stay"]
TARGET = ["move right", "move right", "move down", "stay", "move left", "move up"]


def matches(plans):
    """A simulator whose score is the number of steps that match TARGET (the real world can be one too)."""
    return np.array([sum(a == b for a, b in zip(plan, TARGET, strict=True)) for plan in plans], float)


def test_mppi_beats_random_shooting_with_the_same_samples():
    plan = mppi_search(matches, VOCAB, horizon=6, population=32, iterations=6, temperature=0.5, seed=0)
    assert plan.actions == TARGET and plan.score == 6.0
    shot = random_shooting(matches, VOCAB, horizon=6, population=32 * 6, seed=0)
    assert len(shot.actions) == 6 and shot.score == matches([shot.actions])[0] < 6.0 and len(shot.history) == 1


def test_mppi_rejects_bad_settings():
    with pytest.raises(ConfigError, match="temperature > 0; received population=4, iterations=1, temperature=0"):
        mppi_search(matches, VOCAB, horizon=6, population=4, iterations=1, temperature=0)


def test_cem_warm_start_keeps_a_plan_sampling_would_miss():
    # one iteration of 2 samples almost never draws TARGET (5^-6 per draw); seeded with it, CEM returns it
    cold = cem_search(matches, VOCAB, horizon=6, population=2, elites=1, iterations=1, seed=0)
    warm = cem_search(matches, VOCAB, horizon=6, population=2, elites=1, iterations=1, seed=0, warm_start=TARGET)
    assert cold.score < 6.0 and warm.actions == TARGET and warm.score == 6.0
    # a shorter plan (the rest of the previous one in MPC) is padded with its last action
    short = cem_search(matches, VOCAB, horizon=6, population=2, elites=1, iterations=1, seed=0,
                       warm_start=TARGET[:5])
    assert short.actions == TARGET[:5] + ["move left"]


def test_cem_warm_start_rejects_unknown_actions():
    with pytest.raises(ConfigError, match=r"outside the vocabulary: \['jump'\]"):
        cem_search(matches, VOCAB, horizon=6, population=2, elites=1, iterations=1, warm_start=["jump"])
