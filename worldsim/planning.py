"""Planning in imagination: the cross-entropy method over discrete action sequences, and an MPC step.

Every iteration forks the session into one batched session of `population` worlds, so each imagined step of all
candidate plans is one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .session import Session, StepResult

# objective(step result of the batch, step index) -> (population,) score of that step (higher is better)
Objective = Callable[[StepResult, int], np.ndarray]


def predicted_reward(out: StepResult, t: int) -> np.ndarray:
    """The model's reward head."""
    return np.asarray(out.reward, dtype=np.float64)


def goal_frame(goal: np.ndarray) -> Objective:
    """Negative mean squared distance (in [0, 1] units) of each imagined frame to a goal frame uint8 (H, W, 3)."""
    target = goal.astype(np.float64) / 255.0

    def score(out: StepResult, t: int) -> np.ndarray:
        frames = np.asarray(out.frame, dtype=np.float64) / 255.0
        return -((frames - target) ** 2).mean(axis=(1, 2, 3))

    return score


def plausible(objective: Objective, weight: float) -> Objective:
    """`objective` minus weight × bits/dim of each imagined frame: keeps plans on futures the model finds likely."""

    def score(out: StepResult, t: int) -> np.ndarray:
        return objective(out, t) - weight * np.asarray(out.bits_per_dim, dtype=np.float64)

    return score


@dataclass
class Plan:
    actions: list[str]  # the best sequence found
    score: float  # its summed objective
    history: list[float]  # best score per iteration


def cem(session: Session, objective: Objective, horizon: int = 8, population: int = 32, elites: int = 4,
        iterations: int = 3, vocabulary: Sequence[str] | None = None, seed: int = 0, smoothing: float = 0.3) -> Plan:
    """Cross-entropy method: sample action sequences from per-step categorical distributions, imagine them all
    in one batched fork, refit the distributions to the `elites` best (mixed with the previous distributions by
    `smoothing`, which keeps exploring), repeat. `session` is not modified."""
    if session.batch_size != 1:
        raise ConfigError(f"cem plans for a batch-1 session; received batch_size={session.batch_size}.")
    if not 1 <= elites <= population:
        raise ConfigError(f"need 1 ≤ elites ≤ population; received elites={elites}, population={population}.")
    vocab = list(vocabulary or session.model.vocabulary)
    rng = np.random.default_rng(seed)
    probs = np.full((horizon, len(vocab)), 1.0 / len(vocab))
    best: tuple[float, list[str]] = (-np.inf, [])
    history = []
    for it in range(iterations):
        idx = np.stack([rng.choice(len(vocab), size=population, p=p) for p in probs], axis=1)  # (pop, horizon)
        world = session.fork(seed=seed * 1000 + it, batch_size=population)
        total = np.zeros(population)
        for t in range(horizon):
            total += objective(world.step([vocab[i] for i in idx[:, t]]), t)
        world.close()
        order = np.argsort(-total)
        if total[order[0]] > best[0]:
            best = (float(total[order[0]]), [vocab[i] for i in idx[order[0]]])
        history.append(float(total[order[0]]))
        counts = np.stack([np.bincount(idx[order[:elites], t], minlength=len(vocab)) for t in range(horizon)])
        probs = (1 - smoothing) * counts / elites + smoothing * probs
    return Plan(best[1], best[0], history)


def mpc_action(session: Session, objective: Objective, **cem_kwargs) -> str:
    """Model-predictive control: plan from the current state, return only the first action (re-plan each step)."""
    return cem(session, objective, **cem_kwargs).actions[0]
