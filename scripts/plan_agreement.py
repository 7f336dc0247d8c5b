"""How well does the model rank a planner's candidate plans? A cheap, steady proxy for the model planner's success.

Runs the real-world planner of `examples/plan_push.py` (MPC with CEM, the real env as its model) on PushWorld
tasks. At every planning state it also scores the candidate plans that CEM tried with the world model (one batched
fork, anchored on the real frames so far), and reports, over all states:
- regret: how much worse in the real world (objective units) the model's favourite plan is than the real best;
- first-action agreement: how often the model's favourite starts with the real best plan's action;
- rank correlation (Spearman) between the model's and the real scores.
Near-block states (contact) and the rest are reported apart.

    python scripts/plan_agreement.py --model pushworld-64 --episodes 10 --seed 30000 [--temperature T] [--samples K]
    python scripts/plan_agreement.py --episodes 2 --seed 30000 --guidance 1.0
    python scripts/plan_agreement.py --episodes 1 --seed 30000 --show 26 --out docs/corner_contact.png

`--show STEP` draws, at the planning state of real step STEP of the first task, the real best plan and the model's
favourite, each played in the real world and in imagination.
"""

import argparse
import copy
import json

import matplotlib
import numpy as np
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import worldsim
from worldsim.envs import PushWorld
from worldsim.envs.push_task import PushTask, keep_last
from worldsim.envs.pushworld import detect_objects
from worldsim.planning import cem_search, imagined

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64")
p.add_argument("--episodes", type=int, default=10)
p.add_argument("--seed", type=int, default=30_000, help="first task seed (kept apart from plan_push's 20000+)")
p.add_argument("--steps", type=int, default=30)
p.add_argument("--horizon", type=int, default=6)
p.add_argument("--population", type=int, default=12)
p.add_argument("--iterations", type=int, default=2)
p.add_argument("--replan-every", type=int, default=5)
p.add_argument("--temperature", type=float, help="sampling temperature of the imagined futures")
p.add_argument("--guidance", type=float, help="classifier-free guidance weight on the imagined futures' actions")
p.add_argument("--samples", type=int, default=1, help="imagined futures per plan, scores averaged")
PushTask.add_arguments(p)
p.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=True,
               help="seed each CEM search with the rest of the previous plan (as plan_push.py does)")
p.add_argument("--json", help="write the per-state figures here")
p.add_argument("--show", type=int, help="draw the plans of the planning state at this real step (first task)")
p.add_argument("--out", default="plan_agreement.png", help="where --show draws")
args = p.parse_args()

wm = worldsim.WorldModel.from_pretrained(args.model)
task = PushTask.from_arguments(wm.config.height, args)
vocab = list(PushWorld.vocabulary)
SESSION = {k: v for k, v in (("temperature", args.temperature), ("guidance", args.guidance)) if v is not None}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def judge(session, env, seen: dict, goal, tried: dict[tuple, float], seed: int, draw: bool = False) -> dict:
    """Score the plans CEM tried (with their real scores) in imagination too and compare the choices."""
    unique, real = [list(plan) for plan in tried], np.array(list(tried.values()))
    sim = imagined(session, task.imagined_objective(goal, seen), seed)
    model = np.mean([sim(unique) for _ in range(args.samples)], axis=0)
    pick, best = int(np.argmax(model)), int(np.argmax(real))
    if draw:
        show(session, env, {"real best": (unique[best], real[best], model[best]),
                            "model's pick": (unique[pick], real[pick], model[pick])})
    return {"near": task.near_block(seen), "plans": len(unique), "regret": float(real[best] - real[pick]),
            "agree": unique[pick][0] == unique[best][0], "rho": spearman(model, real)}


def show(session, env, plans: dict) -> None:
    """Each plan played in a copy of the real env and in one imagined world, a row each."""
    fig, axes = plt.subplots(2 * len(plans), args.horizon, figsize=(1.3 * args.horizon, 2.9 * len(plans)),
                             squeeze=False)
    worlds = session.fork(seed=0, batch_size=len(plans))
    reals = [copy.deepcopy(env) for _ in plans]
    for t in range(args.horizon):
        imagined_frames = worlds.step([actions[t] for actions, _, _ in plans.values()]).frame
        for i, (actions, _, _) in enumerate(plans.values()):
            real_frame = reals[i].step(actions[t])[0]
            for row, frame in ((2 * i, real_frame), (2 * i + 1, imagined_frames[i])):
                axes[row, t].imshow(frame)
                axes[row, t].set_xticks([])
                axes[row, t].set_yticks([])
                if row == 2 * i:
                    axes[row, t].set_title(actions[t], fontsize=7)
    worlds.close()
    for i, (name, (_, real_score, model_score)) in enumerate(plans.items()):
        axes[2 * i, 0].set_ylabel(f"{name}\nreal: {real_score:.2f}", fontsize=7)
        axes[2 * i + 1, 0].set_ylabel(f"imagined\nmodel: {model_score:.2f}", fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def run_task(seed: int) -> list[dict]:
    session = wm.session(seed=seed, **SESSION)
    env, info, seen = task.begin(seed, session)
    goal = info["goal_pos"]
    states, steps, rest = [], 0, []
    while steps < args.steps:
        tried: dict[tuple, float] = {}  # each distinct plan CEM tried → its real score (the env is deterministic)
        real_sim = task.real_simulator(env)

        def recording(plans, real_sim=real_sim, tried=tried):
            scores = real_sim(plans)
            tried.update(zip(map(tuple, plans), scores.tolist(), strict=True))
            return scores

        found = cem_search(recording, vocab, args.horizon, args.population, max(1, args.population // 8),
                           args.iterations, seed + steps, warm_start=rest if args.warm_start else None).actions
        draw = seed == args.seed and steps == args.show
        if args.show is None or draw:  # with --show, only that state is judged
            states.append({"seed": seed, "step": steps,
                           **judge(session, env, seen, goal, tried, seed + steps, draw)})
        done_steps = 1 if task.near_block(seen) else args.replan_every
        plan, rest = found[:done_steps], found[done_steps:]
        for a in plan:
            frame, _, done, _, _ = env.step(a)
            session.observe(frame, action=a)
            seen = keep_last(detect_objects(frame), seen)
            steps += 1
            if done:
                return states
    return states


states = [s for seed in tqdm(range(args.seed, args.seed + args.episodes), unit="task")
          for s in run_task(seed)]
if args.show is not None and not states:
    p.exit(2, f"plan_agreement.py: real step {args.show} of task {args.seed} is not a planning state (the planner "
              f"executed several steps there, or the task ended first); choose a step the planner plans at.\n")
summary = {}
for name, group in (("all", states), ("near block", [s for s in states if s["near"]]),
                    ("away", [s for s in states if not s["near"]])):
    if group:
        summary[name] = {"states": len(group), "regret": float(np.mean([s["regret"] for s in group])),
                         "agree": float(np.mean([s["agree"] for s in group])),
                         "rho": float(np.mean([s["rho"] for s in group]))}
        print(f"{name:>10}: {len(group):4d} states  regret {summary[name]['regret']:.3f}  first action agrees "
              f"{summary[name]['agree']:.2f}  rank correlation {summary[name]['rho']:.2f}")
if args.json:
    with open(args.json, "w") as f:
        json.dump({**vars(args), "summary": summary, "states": states}, f, indent=2)
