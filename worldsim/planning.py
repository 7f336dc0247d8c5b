"""Planning in imagination: the cross-entropy method, MPPI and random shooting over action sequences (phrases
from a vocabulary, or vectors in a Box: see `planning_box`), and an MPC step.

Every iteration forks the session into one batched session of `population` worlds, so each imagined step of all
candidate plans is one forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .actions import Action, ActionSpec
from .errors import ConfigError
from .planning_box import box_search, uniform_plans
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
    actions: list[Action]  # the best sequence found: phrases, or float32 (d,) vectors
    score: float  # its summed objective
    history: list[float]  # best score per iteration


# simulate(population of action sequences) -> (population,) summed objective: imagined or real
Simulator = Callable[[list[list[Any]]], np.ndarray]
# what a search draws actions from: a vocabulary of phrases, or an ActionSpec (a vector spec searches its Box)
ActionSpace = Sequence[str] | ActionSpec


def _box(space: ActionSpace) -> ActionSpec | None:
    """The vector spec to search, or None for phrases (a text ActionSpec searches its vocabulary)."""
    return space if isinstance(space, ActionSpec) and space.is_vector else None


def _phrases(space: ActionSpace) -> list[str]:
    return list(space.vocabulary) if isinstance(space, ActionSpec) else list(space)


def action_space_of(session: Session) -> ActionSpace:
    """What the planners search for this session's model: its vector spec, or its vocabulary."""
    spec = session.model.action_spec
    return spec if spec.is_vector else spec.vocabulary


def imagined(session: Session, objective: Objective, seed: int = 0) -> Simulator:
    """Score action sequences in imagination: one batched fork of `session` per call (the session is untouched)."""
    if session.batch_size != 1:
        raise ConfigError(f"planning needs a batch-1 session; received batch_size={session.batch_size}.")
    calls = [0]

    def simulate(plans: list[list[Any]]) -> np.ndarray:
        calls[0] += 1
        world = session.fork(seed=seed * 1000 + calls[0], batch_size=len(plans))
        total = np.zeros(len(plans))
        for t in range(len(plans[0])):
            total += objective(world.step([p[t] for p in plans]), t)
        world.close()
        return total

    return simulate


def cem_search(simulate: Simulator, vocabulary: ActionSpace, horizon: int = 8, population: int = 32,
               elites: int = 4, iterations: int = 3, seed: int = 0, smoothing: float = 0.3,
               warm_start: Sequence[Action] | None = None, smoothness: float = 0.5) -> Plan:
    """Cross-entropy method: sample action sequences from per-step categorical distributions (phrases) or Gaussians
    (a vector ActionSpec: see `planning_box`), score them with `simulate`, refit the distributions to the `elites`
    best (mixed with the previous distributions by `smoothing`, which keeps exploring), repeat.

    warm_start: a plan to include in the first population (in MPC, the rest of the previous best plan), so a good
    plan once found is not lost to sampling; shorter ones are padded with their last action.
    smoothness: vector plans only: correlation of the sampling noise between consecutive steps (0: independent).
    """
    if not 1 <= elites <= population:
        raise ConfigError(f"need 1 ≤ elites ≤ population; received elites={elites}, population={population}.")
    box = _box(vocabulary)
    if box is not None:
        plan, score, history = box_search(simulate, box, horizon, population, iterations, seed, smoothing,
                                          elites=elites, warm_start=warm_start, smoothness=smoothness)
        return Plan(list(plan), score, history)
    vocab = _phrases(vocabulary)
    rng = np.random.default_rng(seed)
    probs = np.full((horizon, len(vocab)), 1.0 / len(vocab))
    best: tuple[float, list[Action]] = (-np.inf, [])
    history = []
    for i in range(iterations):
        idx = np.stack([rng.choice(len(vocab), size=population, p=p) for p in probs], axis=1)  # (pop, horizon)
        if i == 0 and warm_start:
            idx[0] = _plan_indices(warm_start, vocab, horizon)
        total = simulate([[vocab[i] for i in row] for row in idx])
        order = np.argsort(-total)
        if total[order[0]] > best[0]:
            best = (float(total[order[0]]), [vocab[i] for i in idx[order[0]]])
        history.append(float(total[order[0]]))
        counts = np.stack([np.bincount(idx[order[:elites], t], minlength=len(vocab)) for t in range(horizon)])
        probs = (1 - smoothing) * counts / elites + smoothing * probs
    return Plan(best[1], best[0], history)


def _plan_indices(plan: Sequence[Action], vocab: list[str], horizon: int) -> np.ndarray:
    unknown = [a for a in plan if not isinstance(a, str) or a not in vocab]
    if unknown:
        raise ConfigError(f"warm_start holds actions outside the vocabulary: {unknown}; use some of {vocab}.")
    steps = list(plan[:horizon]) + [plan[-1]] * max(0, horizon - len(plan))
    return np.array([vocab.index(str(a)) for a in steps])


def cem(session: Session, objective: Objective, horizon: int = 8, population: int = 32, elites: int = 4,
        iterations: int = 3, vocabulary: ActionSpace | None = None, seed: int = 0, smoothing: float = 0.3,
        warm_start: Sequence[Action] | None = None, smoothness: float = 0.5) -> Plan:
    """CEM in imagination: every candidate plan of an iteration is imagined in one batched fork of `session`.
    A vector-action model's plans are vectors in its Box (`vocabulary` defaults to the model's action space)."""
    return cem_search(imagined(session, objective, seed), vocabulary or action_space_of(session), horizon,
                      population, elites, iterations, seed, smoothing, warm_start, smoothness)


def mpc_action(session: Session, objective: Objective, **cem_kwargs) -> Action:
    """Model-predictive control: plan from the current state, return only the first action (re-plan each step)."""
    return cem(session, objective, **cem_kwargs).actions[0]


def mppi_search(simulate: Simulator, vocabulary: ActionSpace, horizon: int = 8, population: int = 32,
                iterations: int = 3, temperature: float = 1.0, seed: int = 0, smoothing: float = 0.3,
                warm_start: Sequence[Action] | None = None, smoothness: float = 0.5) -> Plan:
    """MPPI over discrete actions: sample action sequences from per-step categorical distributions, score them with
    `simulate`, and refit every step's distribution to all samples weighted by exp(score / temperature) (scores
    in the objective's units: a low temperature approaches CEM with one elite, a high one keeps the distribution
    wide), mixed with the previous distribution by `smoothing`. Returns the best sequence sampled.

    With iterations=1 this is random shooting: the best of `population` uniformly random sequences. A vector
    ActionSpec searches its Box with per-step Gaussians (see `planning_box`; warm_start and smoothness apply there).
    """
    if population < 1 or iterations < 1 or not temperature > 0:
        raise ConfigError(f"need population ≥ 1, iterations ≥ 1 and temperature > 0; received population="
                          f"{population}, iterations={iterations}, temperature={temperature}.")
    box = _box(vocabulary)
    if box is not None:
        plan, score, history = box_search(simulate, box, horizon, population, iterations, seed, smoothing,
                                          temperature=temperature, warm_start=warm_start, smoothness=smoothness)
        return Plan(list(plan), score, history)
    vocab = _phrases(vocabulary)
    rng = np.random.default_rng(seed)
    probs = np.full((horizon, len(vocab)), 1.0 / len(vocab))
    best: list[Action] = []
    best_score, history = -np.inf, []
    for _ in range(iterations):
        # inverse-CDF draws for all plans and steps at once: (population, horizon) action indices
        cdf = np.cumsum(probs, axis=1)
        idx = np.minimum((rng.random((population, horizon, 1)) > cdf[None]).sum(-1), len(vocab) - 1)
        total = np.asarray(simulate([[vocab[i] for i in row] for row in idx]), dtype=np.float64)
        top = int(np.argmax(total))
        if total[top] > best_score:
            best, best_score = [vocab[i] for i in idx[top]], float(total[top])
        history.append(float(total[top]))
        weights = np.exp((total - total[top]) / temperature)
        onehot = np.eye(len(vocab))[idx]  # (population, horizon, vocab)
        probs = (1 - smoothing) * np.einsum("p,pha->ha", weights / weights.sum(), onehot) + smoothing * probs
    return Plan(best, best_score, history)


def random_shooting(simulate: Simulator, vocabulary: ActionSpace, horizon: int = 8, population: int = 32,
                    seed: int = 0) -> Plan:
    """The best of `population` uniformly random action sequences (phrases, or vectors uniform in the Box)."""
    box = _box(vocabulary)
    if box is None:
        return mppi_search(simulate, vocabulary, horizon, population, iterations=1, seed=seed)
    plans = uniform_plans(box, horizon, population, seed)
    total = np.asarray(simulate(plans), dtype=np.float64)
    top = int(np.argmax(total))
    return Plan(list(plans[top]), float(total[top]), [float(total[top])])


def mppi(session: Session, objective: Objective, horizon: int = 8, population: int = 32, iterations: int = 3,
         temperature: float = 1.0, vocabulary: ActionSpace | None = None, seed: int = 0,
         smoothing: float = 0.3, warm_start: Sequence[Action] | None = None, smoothness: float = 0.5) -> Plan:
    """MPPI in imagination: every candidate plan of an iteration is imagined in one batched fork of `session`."""
    return mppi_search(imagined(session, objective, seed), vocabulary or action_space_of(session), horizon,
                       population, iterations, temperature, seed, smoothing, warm_start, smoothness)
