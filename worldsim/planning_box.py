"""Search over bounded vector actions (a Box): CEM and MPPI with per-step Gaussians in the spec's normalised box.

Plans are sampled in [-1, 1]^d (the units the model sees), with noise correlated over time (`smoothness`), clipped
to the box, and handed to `simulate` in the spec's own units. A warm start (in MPC, the previous plan shifted by
one step) seeds the first mean and joins the first population, so a good plan once found is not lost.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .actions import ActionSpec
from .errors import ConfigError, InvalidAction

INIT_STD = 0.5  # first sampling spread, in normalised units (the box is 2 wide)
MIN_STD = 0.02  # floor, so the search never collapses to one point before its last iteration


def _unit_plan(plan: Sequence[Any], spec: ActionSpec, horizon: int) -> np.ndarray:
    """A warm-start plan in the spec's units → (horizon, d) normalised, padded with its last action."""
    rows = [spec.check_vector(a, f"warm_start[{i}]")[0] for i, a in enumerate(plan)]
    if not rows:
        raise InvalidAction("warm_start is empty; pass None or at least one action.")
    rows = rows[:horizon] + [rows[-1]] * max(0, horizon - len(rows))
    return spec.normalise(np.stack(rows))


def _sample(rng: np.random.Generator, mean: np.ndarray, std: np.ndarray, population: int,
            smoothness: float) -> np.ndarray:
    """(population, horizon, d) plans: mean + std·noise, the noise an AR(1) process over steps, clipped to [-1, 1].

    With smoothness κ the noise is ε_t = κ·ε_{t-1} + √(1-κ²)·n_t: unit variance at every step, correlated over time.
    """
    horizon, d = mean.shape
    n = rng.standard_normal((population, horizon, d))
    eps = np.empty_like(n)
    eps[:, 0] = n[:, 0]
    for t in range(1, horizon):
        eps[:, t] = smoothness * eps[:, t - 1] + np.sqrt(1 - smoothness**2) * n[:, t]
    return np.clip(mean[None] + std[None] * eps, -1.0, 1.0)


def _check(horizon: int, population: int, iterations: int, smoothness: float) -> None:
    if horizon < 1 or population < 1 or iterations < 1 or not 0 <= smoothness < 1:
        raise ConfigError(f"need horizon ≥ 1, population ≥ 1, iterations ≥ 1 and 0 ≤ smoothness < 1; received "
                          f"horizon={horizon}, population={population}, iterations={iterations}, "
                          f"smoothness={smoothness}.")


def box_search(simulate: Callable[[list[list[np.ndarray]]], np.ndarray], spec: ActionSpec, horizon: int,
               population: int, iterations: int, seed: int, smoothing: float, elites: int | None = None,
               temperature: float | None = None, warm_start: Sequence[Any] | None = None,
               smoothness: float = 0.5) -> tuple[list[np.ndarray], float, list[float]]:
    """CEM (`elites` given: refit mean and std to the best plans) or MPPI (`temperature` given: refit to all plans
    weighted by exp(score / temperature)) over (horizon, d) plans. The new mean and std are mixed with the old ones
    by `smoothing`. Returns the best plan found (spec units), its score and the best score per iteration."""
    _check(horizon, population, iterations, smoothness)
    rng = np.random.default_rng(seed)
    mean = np.zeros((horizon, spec.dim)) if not warm_start else _unit_plan(warm_start, spec, horizon)
    std = np.full((horizon, spec.dim), INIT_STD)
    best, best_score, history = mean, -np.inf, []
    for i in range(iterations):
        unit = _sample(rng, mean, std, population, smoothness)
        if i == 0 and warm_start:
            unit[0] = mean
        plans = spec.denormalise(unit)
        total = np.asarray(simulate([list(p) for p in plans]), dtype=np.float64)
        order = np.argsort(-total)
        if total[order[0]] > best_score:
            best, best_score = unit[order[0]], float(total[order[0]])
        history.append(float(total[order[0]]))
        if elites is not None:
            w = np.zeros(population)
            w[order[:elites]] = 1.0 / elites
        else:
            w = np.exp((total - total[order[0]]) / float(temperature or 1.0))
            w /= w.sum()
        new_mean = np.einsum("p,phd->hd", w, unit)
        new_std = np.sqrt(np.einsum("p,phd->hd", w, (unit - new_mean[None]) ** 2))
        mean = (1 - smoothing) * new_mean + smoothing * mean
        std = np.maximum((1 - smoothing) * new_std + smoothing * std, MIN_STD)
    return list(spec.denormalise(best)), best_score, history


def uniform_plans(spec: ActionSpec, horizon: int, population: int, seed: int) -> list[list[np.ndarray]]:
    """`population` plans of `horizon` actions drawn uniformly in the box (random shooting)."""
    rng = np.random.default_rng(seed)
    return [list(p) for p in spec.denormalise(rng.uniform(-1, 1, (population, horizon, spec.dim)))]
