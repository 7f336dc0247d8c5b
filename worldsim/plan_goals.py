"""`worldsim plan`: planning to goal images, measured the way robot-learning papers measure it.

Start/goal pairs come from held-out episodes of a world's data policy (the goal is the state `offset` env steps
later, shown to the planner as an image). Each controller gets the same env-step budget; success is the world's own
pose criterion, checked on the real state after every env step and latched. Controllers, with the same search:
"model" (CEM or MPPI in imagination; cost: distance between imagined and goal frames in the codec's latent space,
optionally plus a detector-pose cost), "real" (the same search with the real simulator as its model, through state
save/restore; cost: the world's state cost) and "random" (uniform random actions). A world opts in with a `goals`
hook (see `Goals`); `worldsim.plan_copy.CopyGoals` serves worlds whose env can be deep-copied.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from .argtypes import positive_int as _count

CONTROLLERS = ("model", "real", "random")
SEARCH_SEED_STRIDE = 1_000_003  # the planners' own randomness, apart from the pairs' seeds


@dataclass
class GoalPair:
    """One planning problem: the real start state, the goal state and its image, and the frames before the start.

    frames: (k+1, H, W, 3) uint8 real frames ending with the start's (the model planner's context); actions: the k
    actions between them; goal_frame: (H, W, 3) uint8; seed/step: where in which held-out episode it comes from.
    """

    index: int
    seed: int
    step: int
    start: Any
    goal: Any
    frames: np.ndarray
    actions: list[Any]
    goal_frame: np.ndarray


class RealWorld(Protocol):
    """A world's real simulator at a frame size: load a state, step (with a frame) or advance (physics only)."""

    action_spec: Any  # worldsim.ActionSpec of the actions it takes
    env: Any  # the Gymnasium env underneath (data policies are called with it)

    def begin(self, seed: int) -> None: ...  # reset the env with `seed` (a held-out episode starts)
    def info(self) -> dict[str, Any]: ...  # the env's info after the last reset/step (what data policies read)
    def frame(self) -> np.ndarray: ...  # the current frame at the model's size, (H, W, 3) uint8
    def reset_to(self, state: Any) -> np.ndarray: ...  # start an episode in `state`; its frame
    def load(self, state: Any) -> None: ...  # put the simulator in `state` without drawing
    def state(self) -> Any: ...
    def step(self, action: Any) -> np.ndarray: ...  # one env step; the new frame
    def advance(self, action: Any) -> None: ...  # one env step without drawing (planners' simulation)
    def close(self) -> None: ...


class Goals(Protocol):
    """What `worldsim plan` needs from a world (`World.goals`). States are the world's own objects."""

    tasks: tuple[str, ...]  # "pairs" (the protocol above), and e.g. "native" (the env's own task)

    def make(self, size: int) -> RealWorld: ...
    def pairs(self, world: RealWorld, count: int, seed: int, offset: int, task: str) -> list[GoalPair]: ...
    def budget(self, task: str) -> int: ...
    def criterion(self, task: str) -> str: ...  # the success test in words, for reports
    def success(self, state: Any, goal: Any, task: str) -> bool: ...
    def distance(self, state: Any, goal: Any) -> dict[str, float]: ...  # e.g. {"position": …, "angle_deg": …}
    def cost(self, state: Any, goal: Any, task: str) -> float: ...  # real planner's: 0 at the goal, ~1 at the border
    def hold(self, state: Any) -> Any: ...  # the action that keeps the agent where it is (the search's first mean)
    def policy(self) -> Any: ...  # a fresh data policy (`policy(env, obs, info, rng) -> action`) for the pairs
    def pose(self, state: Any) -> list[float]: ...  # for reports
    def frame_cost(self, frames: np.ndarray, goal_frame: np.ndarray) -> np.ndarray: ...  # (B,) detector-pose cost


@dataclass(frozen=True)
class Search:
    """The search every planning controller runs, in receding horizon (MPC)."""

    planner: str = "cem"  # "cem" or "mppi" (worldsim.planning)
    horizon: int = 5  # searched actions per plan
    action_repeat: int = 5  # env steps each searched action is held (lookahead: horizon × action_repeat)
    population: int = 64
    iterations: int = 3
    elites: int | None = None  # CEM; None: population // 8 (at least 1)
    temperature: float = 0.1  # MPPI, in cost units
    replan_every: int = 1  # searched actions carried out before searching again
    path_weight: float = 0.25  # weight of each intermediate action's cost; the last action's weighs 1
    pose_cost: float = 0.0  # model planner: weight of the world's detector-pose cost beside the latent cost

    def check(self) -> None:
        from .errors import ConfigError

        if self.planner not in ("cem", "mppi"):
            raise ConfigError(f"planner must be 'cem' or 'mppi'; received {self.planner!r}.")
        for name in ("horizon", "action_repeat", "population", "iterations", "replan_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be ≥ 1; received {getattr(self, name)}.")
        if self.elites is not None and not 1 <= self.elites <= self.population:
            raise ConfigError(f"need 1 ≤ elites ≤ population; received elites={self.elites}, population="
                              f"{self.population}.")
        if self.replan_every > self.horizon:
            raise ConfigError(f"replan_every ({self.replan_every}) cannot exceed the horizon ({self.horizon}): a "
                              "plan has only that many actions to carry out.")


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a success rate (sound at small counts, where p ± 2σ is not)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


def _weights(search: Search, t: int) -> float:
    """Weight of the cost after env step t of an expanded plan: only at the end of each searched action."""
    if (t + 1) % search.action_repeat:
        return 0.0
    return 1.0 if (t + 1) == search.horizon * search.action_repeat else search.path_weight


def latent_objective(model: Any, goal_frame: np.ndarray, start_frame: np.ndarray, search: Search,
                     goals: Goals | None) -> Callable[[Any, int], np.ndarray]:
    """`worldsim.planning` objective: minus the mean squared distance of each imagined frame's codec tokens to the
    goal frame's (`model.net.encode_frames`), in units of the start frame's distance, plus `search.pose_cost` ×
    the world's detector-pose cost."""
    import torch

    def tokens(frames: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return model.net.encode_frames(torch.from_numpy(np.ascontiguousarray(frames))[:, None])[:, 0]

    goal = tokens(goal_frame[None])
    unit = max(float(((tokens(start_frame[None]) - goal) ** 2).mean()), 1e-8)

    def objective(out: Any, t: int) -> np.ndarray:
        frames = np.asarray(out.frame)
        w = _weights(search, t)
        if w == 0.0:
            return np.zeros(len(frames))
        cost = ((tokens(frames) - goal) ** 2).mean(dim=(1, 2)).double().numpy() / unit
        if search.pose_cost and goals is not None:
            cost = cost + search.pose_cost * np.asarray(goals.frame_cost(frames, goal_frame), float)
        return -w * cost

    return objective


def real_simulator(sandbox: RealWorld, goals: Goals, state: Any, goal: Any, search: Search, task: str = "pairs"):
    """Score plans by playing each from `state` in `sandbox` (a second real simulator) with the world's state cost."""
    def simulate(plans: list[list[Any]]) -> np.ndarray:
        totals = np.zeros(len(plans))
        for i, plan in enumerate(plans):
            sandbox.load(state)
            for j, action in enumerate(plan):
                for _ in range(search.action_repeat):
                    sandbox.advance(action)
                w = 1.0 if j == len(plan) - 1 else search.path_weight
                totals[i] -= w * goals.cost(sandbox.state(), goal, task)
        return totals
    return simulate


def _search(search: Search, simulate, space: Any, seed: int, warm: list[Any]):
    from .planning import cem_search, mppi_search

    if search.planner == "cem":
        elites = search.elites or max(1, search.population // 8)
        return cem_search(simulate, space, search.horizon, search.population, elites, search.iterations, seed,
                          warm_start=warm)
    return mppi_search(simulate, space, search.horizon, search.population, search.iterations, search.temperature,
                       seed, warm_start=warm)


def _random_action(spec: Any, rng: np.random.Generator) -> Any:
    if spec.is_vector:
        return spec.denormalise(rng.uniform(-1, 1, spec.dim)).astype(np.float32)
    return spec.vocabulary[int(rng.integers(len(spec.vocabulary)))]


def run_episode(controller: str, pair: GoalPair, goals: Goals, world: RealWorld, sandbox: RealWorld | None,
                task: str, search: Search, model: Any = None, seed: int = 0,
                budget: int | None = None) -> dict[str, Any]:
    """One controller on one pair: search, carry out `replan_every` actions (each held `action_repeat` env steps),
    repeat until success (latched) or `budget` env steps (default: the task's) are spent. Returns its record."""
    from .planning import imagined

    began = time.perf_counter()
    budget = budget or goals.budget(task)
    world.reset_to(pair.start)
    rng = np.random.default_rng(seed)
    session = None
    space = model.action_spec if controller == "model" else world.action_spec
    if controller == "model":
        session = model.session(seed=seed)
        session.reset(frames=pair.frames, actions=pair.actions or None)
        objective = latent_objective(model, pair.goal_frame, pair.frames[-1], search, goals)
    steps, searches = 0, 0
    rest: list[Any] = []
    at = 0 if goals.success(world.state(), pair.goal, task) else None
    while at is None and steps < budget:
        if controller == "random":
            chunk = [_random_action(space, rng)]
        else:
            state = world.state()
            warm = rest + [rest[-1] if rest else goals.hold(state)] * (search.horizon - len(rest))
            luck = seed + searches
            if session is not None:
                expand = imagined(session, objective, luck)
                simulate = lambda plans, f=expand: f([[a for a in p for _ in range(search.action_repeat)]
                                                      for p in plans])
            else:
                assert sandbox is not None
                simulate = real_simulator(sandbox, goals, state, pair.goal, search, task)
            found = _search(search, simulate, space, luck, warm).actions
            chunk, rest = found[:search.replan_every], found[search.replan_every:]
            searches += 1
        for action in chunk:
            for _ in range(search.action_repeat):
                frame = world.step(action)
                steps += 1
                if session is not None:
                    session.observe(frame, action=action)
                if goals.success(world.state(), pair.goal, task):
                    at = steps
                if at is not None or steps >= budget:
                    break
            if at is not None or steps >= budget:
                break
    if session is not None:
        session.close()
    final = world.state()
    return {"pair": pair.index, "controller": controller, "seed": pair.seed, "step": pair.step,
            "start": goals.pose(pair.start), "goal": goals.pose(pair.goal), "success": at is not None,
            "steps_to_success": at, "steps": steps, "searches": searches, "final": goals.pose(final),
            "final_distance": goals.distance(final, pair.goal), "start_distance": goals.distance(pair.start, pair.goal),
            "time_s": round(time.perf_counter() - began, 3)}


def summarise(episodes: list[dict[str, Any]], controllers: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per controller: successes, success rate with its 95% Wilson interval, mean final distances, mean time."""
    out = {}
    for c in controllers:
        mine = [e for e in episodes if e["controller"] == c]
        if not mine:
            continue
        wins = sum(e["success"] for e in mine)
        keys = mine[0]["final_distance"].keys()
        out[c] = {"episodes": len(mine), "successes": wins, "success_rate": wins / len(mine),
                  "interval_95": list(wilson(wins, len(mine))),
                  "mean_final_distance": {k: float(np.mean([e["final_distance"][k] for e in mine])) for k in keys},
                  "mean_time_s": float(np.mean([e["time_s"] for e in mine]))}
    return out


# ----- `worldsim plan` -----------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `worldsim plan`."""
    d = Search()
    parser.add_argument("--model", help="bundled model name, checkpoint directory or preset (needed by the 'model' "
                        "controller; its frame size and meta.json env_id are the defaults)")
    parser.add_argument("--env", help="world name or Gymnasium env id whose plug-in defines goals (default: the "
                        "model's meta.json env_id)")
    parser.add_argument("--episodes", type=_count, default=50, help="start/goal pairs (each controller gets every "
                        "pair)")
    parser.add_argument("--controllers", default="model,real,random",
                        help="comma-separated subset of model,real,random (default: %(default)s)")
    parser.add_argument("--task", default="pairs", help="'pairs': goals from held-out episodes (the field's "
                        "protocol); a world may offer more (PushT: 'native', gym-pusht's own task)")
    parser.add_argument("--goal-offset", type=_count, default=25, help="env steps from start to goal in a held-out "
                        "episode (default: %(default)s)")
    parser.add_argument("--budget", type=_count, help="env steps per episode (default: the task's; 50 for pairs)")
    parser.add_argument("--planner", choices=("cem", "mppi"), default=d.planner, help="the search (default: cem)")
    parser.add_argument("--horizon", type=_count, default=d.horizon, help="searched actions per plan "
                        "(default: %(default)s)")
    parser.add_argument("--action-repeat", type=_count, default=d.action_repeat, help="env steps each searched "
                        "action is held; lookahead = horizon × action repeat (default: %(default)s)")
    parser.add_argument("--population", type=_count, default=d.population, help="plans per search iteration "
                        "(default: %(default)s)")
    parser.add_argument("--iterations", type=_count, default=d.iterations, help="search iterations "
                        "(default: %(default)s)")
    parser.add_argument("--elites", type=_count, help="CEM elites (default: population // 8)")
    parser.add_argument("--replan-every", type=_count, default=d.replan_every, help="searched actions carried out "
                        "before searching again (default: %(default)s)")
    parser.add_argument("--path-weight", type=float, default=d.path_weight, help="cost weight of each intermediate "
                        "action's outcome; the plan's last weighs 1 (default: %(default)s)")
    parser.add_argument("--pose-cost", type=float, default=d.pose_cost, help="model planner: weight of the world's "
                        "detector-pose cost beside the latent distance (default: %(default)s, off)")
    parser.add_argument("--size", type=_count, default=64, help="frame size when no model is given "
                        "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=10_000, help="first held-out episode seed (keep it apart from "
                        "the training data's; default: %(default)s)")
    parser.add_argument("--json", required=True, help="write the summary and per-episode results here")


def plan_goals(world: Any, controllers: Sequence[str], episodes: int, search: Search, model: Any = None,
               size: int = 64, task: str = "pairs", offset: int = 25, budget: int | None = None, seed: int = 10_000,
               on_episode: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run the protocol: `episodes` pairs of `world`'s goals (a registered `World`), every controller on each.
    Returns the report (protocol, search, summary per controller, episodes)."""
    from .errors import ConfigError

    goals = world.goals
    if goals is None:
        raise ConfigError(f"the world {world.name!r} (env {world.env_id}) defines no planning goals; a world opts in "
                          "with World(goals=...) (see worldsim.plan_goals.Goals).")
    unknown = [c for c in controllers if c not in CONTROLLERS]
    if unknown or not controllers:
        raise ConfigError(f"unknown controllers {unknown or list(controllers)}; choose among {list(CONTROLLERS)}.")
    if task not in goals.tasks:
        raise ConfigError(f"{world.name} offers the planning tasks {list(goals.tasks)}; received task={task!r}.")
    search.check()
    if model is not None:
        size = model.config.height
        if model.config.width != size:
            raise ConfigError(f"planning needs square frames; the model's are {size}×{model.config.width}.")
    if "model" in controllers:
        if model is None:
            raise ConfigError("the 'model' controller needs --model; or leave it out: --controllers real,random.")
    budget = budget or goals.budget(task)
    real = goals.make(size)
    if "model" in controllers and model.action_spec.kind != real.action_spec.kind:
        raise ConfigError(f"the model takes {model.action_spec.describe()} but {world.name} takes "
                          f"{real.action_spec.describe()}; plan with a model of this world.")
    sandbox = goals.make(size) if "real" in controllers else None
    began = time.perf_counter()
    try:
        pairs = goals.pairs(real, episodes, seed, offset, task)
        out: list[dict[str, Any]] = []
        for pair in pairs:
            for c in controllers:
                record = run_episode(c, pair, goals, real, sandbox, task, search, model,
                                     seed=pair.seed + SEARCH_SEED_STRIDE * CONTROLLERS.index(c), budget=budget)
                out.append(record)
                if on_episode is not None:
                    on_episode(record)
    finally:
        real.close()
        if sandbox is not None:
            sandbox.close()
    return {"world": world.name, "env_id": world.env_id, "task": task,
            "protocol": {"pairs": len(pairs), "goal_offset": offset if task == "pairs" else None,
                         "budget": budget, "success": goals.criterion(task), "latched": True,
                         "first_seed": seed, "frame_size": size},
            "search": asdict(search), "controllers": list(controllers),
            "summary": summarise(out, controllers), "episodes": out,
            "machine": {"cpu_threads": _threads(), "cpu_count": os.cpu_count()},
            "wall_time_s": round(time.perf_counter() - began, 2)}


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def format_table(report: dict[str, Any]) -> str:
    """The summary as a table: success with its 95% interval, mean final distances and time per controller."""
    p = report["protocol"]
    offset = f"goal {p['goal_offset']} steps ahead, " if p["goal_offset"] else ""
    lines = [f"{report['env_id']} ({report['world']}), task {report['task']}: {p['pairs']} pairs, {offset}"
             f"budget {p['budget']} steps, success: {p['success']} (latched)"]
    s = report["search"]
    lines.append(f"search: {s['planner']}, {s['horizon']} actions × {s['action_repeat']} steps, population "
                 f"{s['population']}, {s['iterations']} iterations, replan every {s['replan_every']}")
    rows = [("controller", "success", "95% interval", "final distance", "s/episode")]
    for c, r in report["summary"].items():
        dist = ", ".join(f"{k} {v:.1f}" for k, v in r["mean_final_distance"].items())
        lo, hi = r["interval_95"]
        rows.append((c, f"{r['successes']}/{r['episodes']} ({r['success_rate']:.2f})", f"[{lo:.2f}, {hi:.2f}]",
                     dist, f"{r['mean_time_s']:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """`worldsim plan`: load the model (if any), run the protocol, write the JSON after every episode, print the
    table."""
    from pathlib import Path

    from tqdm import tqdm

    from .dataset import atomic_write
    from .errors import ConfigError
    from .worlds import get

    controllers = [c.strip() for c in args.controllers.split(",") if c.strip()]
    model = None
    if args.model is not None:
        from .world_model import WorldModel

        model = WorldModel.load(args.model)
    env = args.env
    if env is None:
        if model is None:
            raise ConfigError("give --env (a world name or env id) or a --model whose meta.json names its env.")
        from .eval_generic import model_env_id

        env, _ = model_env_id(model)
    world = get(env)
    search = Search(planner=args.planner, horizon=args.horizon, action_repeat=args.action_repeat,
                    population=args.population, iterations=args.iterations, elites=args.elites,
                    replan_every=args.replan_every, path_weight=args.path_weight, pose_cost=args.pose_cost)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    done: list[dict[str, Any]] = []
    bar = tqdm(total=args.episodes * len(controllers), desc="plan", unit="ep", disable=not os.isatty(2))

    def progress(record: dict[str, Any]) -> None:  # a long run stopped early keeps what it finished
        done.append(record)
        bar.update(1)
        text = json.dumps({"complete": False, "episodes": done}, indent=1, default=float)
        atomic_write(path, lambda f: f.write(text.encode()))

    try:
        report = plan_goals(world, controllers, args.episodes, search, model, args.size, args.task,
                            args.goal_offset, args.budget, args.seed, on_episode=progress)
    finally:
        bar.close()
    report["model"] = None if args.model is None else str(args.model)
    text = json.dumps({"complete": True, **report}, indent=1, default=float)
    atomic_write(path, lambda f: f.write(text.encode()))
    print(format_table(report))
    print(f"wrote {path}")
    return 0
