"""Planners over Box actions: an analytic objective they must solve, and CEM/MPPI/MPC on a vector-action model."""

from __future__ import annotations

import numpy as np
import pytest

import worldsim
from worldsim import ActionSpec, ConfigError, InvalidAction, WorldModel
from worldsim.planning import cem, cem_search, goal_frame, mpc_action, mppi, mppi_search, random_shooting

SPEC = ActionSpec.vector([0.0, -2.0], [512.0, 2.0])
TARGET = np.array([400.0, -1.0])


def quadratic(plans: list[list[np.ndarray]]) -> np.ndarray:
    """Summed negative squared distance of every step's action to TARGET, in normalised units."""
    unit = SPEC.normalise(np.asarray(plans))
    return -((unit - SPEC.normalise(TARGET)) ** 2).sum(axis=(1, 2))


@pytest.mark.parametrize("search", ["cem", "mppi"])
def test_box_search_finds_the_optimum_within_bounds(search):
    if search == "cem":
        plan = cem_search(quadratic, SPEC, horizon=4, population=64, elites=8, iterations=8, seed=0)
    else:
        plan = mppi_search(quadratic, SPEC, horizon=4, population=64, iterations=8, temperature=0.05, seed=0)
    acts = np.asarray(plan.actions)
    assert acts.shape == (4, 2)
    assert (acts >= SPEC.low).all() and (acts <= SPEC.high).all()
    assert np.abs(SPEC.normalise(acts) - SPEC.normalise(TARGET)).max() < 0.1
    assert plan.history[-1] >= plan.history[0]
    random = random_shooting(quadratic, SPEC, horizon=4, population=64, seed=0)
    assert plan.score > random.score  # the search beats the best of as many uniform plans


def test_warm_start_is_kept_and_checked():
    plan = cem_search(quadratic, SPEC, horizon=3, population=8, elites=2, iterations=1, seed=1,
                      warm_start=[TARGET, TARGET])  # padded with its last action to the horizon
    assert plan.score == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(InvalidAction, match=r"warm_start\[0\]: component 0 is 600"):
        cem_search(quadratic, SPEC, horizon=3, population=8, elites=2, iterations=1, warm_start=[[600.0, 0.0]])
    with pytest.raises(ConfigError, match="smoothness=1"):
        cem_search(quadratic, SPEC, horizon=3, population=8, elites=2, iterations=1, smoothness=1.0)


def test_planners_on_a_vector_model_return_vectors():
    spec = {"kind": "vector", "dim": 2, "low": [-1.0, -1.0], "high": [1.0, 1.0]}
    wm = WorldModel.from_config(worldsim.preset("tiny").merged(action_spec=spec))
    goal = np.full((16, 16, 3), 128, np.uint8)
    with wm.session(seed=0) as s:
        s.reset(frames=np.zeros((1, 16, 16, 3), np.uint8))
        for plan in (cem(s, goal_frame(goal), horizon=2, population=4, elites=2, iterations=1),
                     mppi(s, goal_frame(goal), horizon=2, population=4, iterations=1)):
            assert len(plan.actions) == 2 and all(np.shape(a) == (2,) for a in plan.actions)
        first = mpc_action(s, goal_frame(goal), horizon=2, population=4, elites=2, iterations=1)
        assert np.shape(first) == (2,) and np.all(np.abs(first) <= 1)
        s.step(first)  # the session takes what the planner returns
