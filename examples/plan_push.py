"""Solve PushWorld tasks by planning (CEM + MPC) in the world model, checked in the real PushWorld.

Compares three controllers on the same held-out tasks: random actions, the planner imagining with the model,
and the same planner using the real world as its model (the upper bound).

    python examples/plan_push.py [--model pushworld-64] [--episodes 10] [--steps 60]
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

import worldsim
from worldsim.dataset import atomic_write
from worldsim.envs import PushWorld
from worldsim.envs.push_task import PushTask, gap, keep_last
from worldsim.envs.pushworld import detect_objects
from worldsim.planning import cem_search, imagined

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64", help="bundled model name or checkpoint directory")
p.add_argument("--episodes", type=int, default=10)
p.add_argument("--steps", type=int, default=60, help="real steps per task")
p.add_argument("--horizon", type=int, default=8)
p.add_argument("--population", type=int, default=32)
p.add_argument("--iterations", type=int, default=3)
p.add_argument("--replan-every", type=int, default=4, help="real steps executed per plan (MPC)")
p.add_argument("--replan-near-block", type=int, default=1,
               help="real steps executed per plan while the agent is near the block (0: --replan-every)")
p.add_argument("--seed", type=int, default=20_000, help="first task seed (held out from training data)")
p.add_argument("--search-seed", type=int, default=0,
               help="offsets the planners' own randomness (CEM samples, imagined futures, random actions) but not "
                    "the tasks: reruns with other values measure how much a success count varies from run to run")
p.add_argument("--controllers", default="random,model,real", help="comma-separated subset of random,model,real")
p.add_argument("--temperature", type=float, help="sampling temperature of the imagined futures (default: the model's)")
p.add_argument("--guidance", type=float,
               help="classifier-free guidance weight on the actions of the imagined futures (default: the model's)")
PushTask.add_arguments(p)
p.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=True,
               help="seed each CEM search with the rest of the previous plan")
p.add_argument("--json", help="write the success rates and each task's outcome here")
args = p.parse_args()
if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
    p.error(f"--json {args.json}: its folder does not exist; create it first, or give a path in an existing one")

wm = worldsim.WorldModel.from_pretrained(args.model)
task = PushTask.from_arguments(wm.config.height, args)
vocab = list(PushWorld.vocabulary)
SEARCH_SEED_STRIDE = 1_000_003  # far apart, so runs with different search seeds draw from disjoint seed ranges
SESSION = {k: v for k, v in (("temperature", args.temperature), ("guidance", args.guidance))
           if v is not None}  # the rest: the model's defaults


def distance(info: dict) -> float:
    """Block-to-goal distance in the real world, px."""
    return gap(info["block_pos"], info["goal_pos"])


def executed(seen: dict) -> int:
    """Steps of a plan to carry out before planning again: fewer near the block, where contact makes the future
    hardest to imagine."""
    return args.replan_near_block if task.near_block(seen) and args.replan_near_block else args.replan_every


def run_task(controller: str, seed: int) -> tuple[bool, float, float, list[str]]:
    """(success, how far the block got towards the goal in px: start distance − end distance, the start distance,
    the actions taken in the real world)."""
    luck = seed + SEARCH_SEED_STRIDE * args.search_seed  # == seed by default, so earlier runs reproduce
    session = wm.session(seed=luck, **SESSION)
    env, info, seen = task.begin(seed, session)
    goal = info["goal_pos"]
    start = distance(info)
    rng = np.random.default_rng(luck)
    steps, rest, taken = 0, [], []
    while steps < args.steps:
        if controller == "random":
            plan = [vocab[rng.integers(len(vocab))]]
        else:
            sim = (imagined(session, task.imagined_objective(goal, seen), luck) if controller == "model"
                   else task.real_simulator(env))
            found = cem_search(sim, vocab, args.horizon, args.population, max(1, args.population // 8),
                               args.iterations, luck + steps, warm_start=rest if args.warm_start else None).actions
            n = executed(seen)
            plan, rest = found[:n], found[n:]
        for a in plan:
            frame, _, done, _, info = env.step(a)
            taken.append(a)
            session.observe(frame, action=a)  # keep the model anchored on what really happened
            seen = keep_last(detect_objects(frame), seen)
            steps += 1
            if done:
                return True, start - distance(info), start, taken
    return False, start - distance(info), start, taken


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a success rate: sound at the small counts here, where p ± 2σ is not."""
    p_hat, spread = successes / n, z * np.sqrt(successes * (n - successes) / n + z * z / 4) / n
    centre, scale = (p_hat + z * z / (2 * n)), 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def save(**report) -> None:
    """Write the report (with the run's settings) through a temporary file, so a run stopped mid-write leaves the
    previous one whole."""
    text = json.dumps({"model": str(args.model), **vars(args), **report}, indent=2)
    atomic_write(Path(args.json), lambda f: f.write(text.encode()))


results, progress_px, intervals, tasks = {}, {}, {}, {}
for controller in args.controllers.split(","):
    seeds = range(args.seed, args.seed + args.episodes)
    tasks[controller] = []
    for seed in tqdm(seeds, desc=controller, unit="task", leave=False):
        win, px, start, taken = run_task(controller, seed)
        tasks[controller].append({"seed": seed, "success": win, "progress_px": round(float(px), 2),
                                  "start_px": round(float(start), 2), "actions": taken})
        tqdm.write(f"{controller} task {seed}: {'success' if win else 'no success'}, "
                   f"block moved {px:+.1f} px towards the goal")
        if args.json:  # after every task: a long run stopped early keeps what it finished
            save(complete=False, tasks=tasks)
    wins = [t["success"] for t in tasks[controller]]
    results[controller] = float(np.mean(wins))
    progress_px[controller] = float(np.mean([t["progress_px"] for t in tasks[controller]]))
    intervals[controller] = wilson(sum(wins), args.episodes)
    low, high = intervals[controller]
    print(f"{controller:>6}: success {results[controller]:.2f} over {args.episodes} tasks (95% interval "
          f"{low:.2f}–{high:.2f}); block moved {progress_px[controller]:+.1f} px towards the goal on average")
if args.json:
    save(complete=True, success_rate=results, success_interval_95=intervals, block_progress_px=progress_px,
         tasks=tasks)
