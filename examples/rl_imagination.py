"""Train a PushWorld agent purely in imagination, then test it in the real PushWorld.

The agent never sees the real world while it learns: every training episode starts from a real first frame
(`reset(options={"world_seed": [...]})`) and then runs inside `worldsim/WorldModel-v0`, all `--num-envs` episodes
in one batched forward pass per step. The same agent is trained again with the same episodes in the real PushWorld
(the upper bound), and both are evaluated, with a random policy, on real held-out layouts (world seeds ≥ 40000).

The agent: object positions from each frame (`detect_objects`; the goal from the first frame, a real one in both
worlds), a linear policy over state-action features (action a scores θ · [u_a · v_i], u_a its move direction and
v_i vectors between the objects), acting greedily; trained by the cross-entropy method over θ, each candidate
scored by its mean episode return. The reward comes from the same tracked positions in both worlds: the closeness
(block→goal plus 0.3 × agent→block, minus the distances in frame sizes) gained since the first frame, every
step, plus a bonus of 1 when the block is on the goal. Success ends the episode and pays its remaining steps at
the success step's reward (the block stays on the goal). It is computed in the loop rather than by the env's
`reward_fn` hook, which sees one frame and action but not the layout's goal (the model fades the goal marker
over long rollouts). An imagined sub-env whose termination head fires without a detected success is frozen:
its remaining steps are paid at its last reward.

    python examples/rl_imagination.py [--model pushworld-64] [--iterations 6] [--population 6] [--num-envs 24]

The defaults are the measured run: about 10 minutes with OMP_NUM_THREADS=1 on a shared 2-core CPU.
"""

import argparse
import json
import time

import gymnasium as gym
import numpy as np

import worldsim
import worldsim.envs  # registers worldsim/WorldModel-v0 and worldsim/PushWorld-v0
from worldsim.envs import PushWorld
from worldsim.envs.pushworld import GOAL_COLOUR, detect_objects

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64", help="bundled model name or checkpoint directory")
p.add_argument("--iterations", type=int, default=6, help="CEM iterations in each world")
p.add_argument("--population", type=int, default=6, help="candidate policies per CEM iteration")
p.add_argument("--num-envs", type=int, default=24,
               help="episodes per iteration, imagined in one batch: a multiple of --population (each candidate "
                    "plays num_envs / population layouts, the same ones for all candidates)")
p.add_argument("--episode-steps", type=int, default=30, help="steps per episode")
p.add_argument("--eval-episodes", type=int, default=100, help="real held-out layouts for the evaluation")
p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature of the imagined worlds")
p.add_argument("--context", default="frame", choices=["sample", "frame"],
               help="what an imagined frame leaves in the context (Session(context=...))")
p.add_argument("--seed", type=int, default=0, help="seeds CEM, the imagined worlds and the random policy")
p.add_argument("--json", help="write the results here")
args = p.parse_args()
if args.num_envs % args.population:
    p.error(f"--num-envs ({args.num_envs}) must be a multiple of --population ({args.population})")

wm = worldsim.WorldModel.from_pretrained(args.model)
SIZE = wm.config.height
MOVES = np.array([(0, -1), (0, 1), (-1, 0), (1, 0), (0, 0)], float)  # PUSHWORLD_ACTIONS order, image coords
assert PushWorld.vocabulary == ("move up", "move down", "move left", "move right", "stay")
SUCCESS_PX = 4.0 * SIZE / 64  # PushWorld's success radius
BONUS = 1.0
TRAIN_SEED, EVAL_SEED = 30_000, 40_000  # disjoint layouts (the model's data: seeds 1000 … 4999)


def goal_position(frame: np.ndarray) -> np.ndarray:
    """Centre of the goal marker's outline, (x, y) in pixels, from the box around the goal-coloured pixels."""
    ys, xs = np.nonzero(np.linalg.norm(frame.astype(np.float32) - GOAL_COLOUR, axis=-1) < 60)
    if len(xs) == 0:
        return np.full(2, SIZE / 2)
    return np.array([xs.min() + xs.max(), ys.min() + ys.max()]) / 2  # the box: robust to an object covering a side


class Tracker:
    """Agent and block positions from each frame; a missed detection keeps the last position seen."""

    def __init__(self, first: np.ndarray):
        self.goal = goal_position(first)
        self.agent, self.block = np.full(2, SIZE / 2), np.full(2, SIZE / 2)
        self.update(first)
        self.start = self.closeness()

    def update(self, frame: np.ndarray) -> None:
        found = detect_objects(frame)
        if found["agent_pos"] is not None:
            self.agent = np.array(found["agent_pos"])
        if found["block_pos"] is not None:
            self.block = np.array(found["block_pos"])

    def vectors(self) -> np.ndarray:
        """(K, 2) feature vectors in units of the frame size: to the block, its unit direction and that direction
        turned 90°, the block's unit direction to the goal, and the last two gated by how well the agent is lined
        up behind the block (the cosine between agent→block and block→goal)."""
        ab, bg = (self.block - self.agent) / SIZE, (self.goal - self.block) / SIZE
        uab, ubg = ab / (np.linalg.norm(ab) + 1e-6), bg / (np.linalg.norm(bg) + 1e-6)
        behind = float(uab @ ubg)
        turn = np.array([-uab[1], uab[0]])
        return np.stack([ab, uab, turn, ubg, behind * ubg, behind * turn])

    def closeness(self) -> float:
        """Block→goal plus 0.3 × agent→block closeness: minus the distances, in units of the frame size."""
        return -(np.linalg.norm(self.goal - self.block) + 0.3 * np.linalg.norm(self.block - self.agent)) / SIZE

    def reward(self) -> tuple[float, bool]:
        """(per-step reward, success): the closeness gained since the first frame, plus BONUS on success."""
        success = bool(np.linalg.norm(self.goal - self.block) <= SUCCESS_PX)
        return self.closeness() - self.start + BONUS * success, success


N_FEATURES = 6


def act(theta: np.ndarray | None, tracker: Tracker, rng: np.random.Generator) -> int:
    """Greedy action of the linear policy (a random one for theta=None)."""
    if theta is None:
        return int(rng.integers(len(MOVES)))
    direction = theta @ tracker.vectors()  # scores u_a · Σ θ_i v_i; "stay" scores 0
    return int(np.argmax(MOVES @ direction))


class Episodes:
    """Returns and successes of a batch of episodes under the shared reward: success ends an episode and pays
    its remaining steps at its last reward (the block stays on the goal)."""

    def __init__(self, first_frames: np.ndarray, steps: int):
        self.trackers = [Tracker(f) for f in first_frames]
        self.returns, self.done = np.zeros(len(first_frames)), np.zeros(len(first_frames), bool)
        self.success = np.zeros(len(first_frames), bool)
        self.steps = steps

    def record(self, i: int, frame: np.ndarray, t: int, world_ended: bool = False) -> None:
        """Episode i's frame after step t; world_ended: an imagined world's termination head fired without a
        detected success (the world then stays as it is for the remaining steps)."""
        tr = self.trackers[i]
        tr.update(frame)
        r, success = tr.reward()
        left = self.steps - t - 1
        self.returns[i] += r + left * (r if success or world_ended else 0.0)
        self.success[i] |= success
        self.done[i] |= success or world_ended


def imagined_episodes(envs, thetas: list[np.ndarray | None], seeds: list[int], rng) -> Episodes:
    """One episode per (policy, world seed) in the world model, all stepped in one batched pass."""
    frames, _ = envs.reset(seed=int(rng.integers(2**31)), options={"world_seed": seeds})
    ep = Episodes(frames, args.episode_steps)
    for t in range(args.episode_steps):
        actions = [0 if ep.done[i] else act(thetas[i], ep.trackers[i], rng) for i in range(len(seeds))]
        frames, _, terminated, _, _ = envs.step(np.array(actions))  # a done sub-env's row still runs; ignored
        for i in np.flatnonzero(~ep.done):
            ep.record(int(i), frames[i], t, bool(terminated[i]))
        if ep.done.all():
            break
    return ep


def real_episodes(thetas: list[np.ndarray | None], seeds: list[int], rng) -> Episodes:
    """The same episodes in the real PushWorld, ended by the same detected success (`true_success` records
    PushWorld's own success flag, for the evaluation)."""
    worlds = [PushWorld(render_mode="rgb_array", size=SIZE) for _ in seeds]
    ep = Episodes(np.stack([w.reset(seed=s)[0] for w, s in zip(worlds, seeds, strict=True)]), args.episode_steps)
    ep.true_success = np.zeros(len(seeds), bool)
    for t in range(args.episode_steps):
        for i in np.flatnonzero(~ep.done):
            frame, _, _, _, info = worlds[i].step(act(thetas[i], ep.trackers[i], rng))
            ep.record(int(i), frame, t)
            ep.true_success[i] |= info["success"]
        if ep.done.all():
            break
    return ep


def train(play, label: str) -> tuple[np.ndarray, list[float]]:
    """CEM over θ: every iteration, `population` candidates each play the same num_envs/population layouts."""
    rng, play_rng = np.random.default_rng(args.seed), np.random.default_rng(args.seed + 1)
    mean, std = np.zeros(N_FEATURES), np.ones(N_FEATURES)
    per, elites, history = args.num_envs // args.population, max(2, args.population // 4), []
    for it in range(args.iterations):
        t0 = time.time()
        cands = mean + std * rng.standard_normal((args.population, N_FEATURES))
        cands[0] = mean  # keep the current mean in the race
        seeds = [TRAIN_SEED + it * per + j for j in range(per)] * args.population
        ep = play([c for c in cands for _ in range(per)], seeds, play_rng)
        scores = ep.returns.reshape(args.population, per).mean(1)
        best = cands[np.argsort(-scores)[:elites]]
        mean, std = best.mean(0), 0.7 * best.std(0) + 0.3 * std
        history.append(float(scores.max()))
        print(f"{label} iteration {it + 1}/{args.iterations}: best return {scores.max():.2f}, mean "
              f"{scores.mean():.2f}, success {ep.success.mean():.2f} ({time.time() - t0:.0f} s)", flush=True)
    return mean, history


def evaluate(theta: np.ndarray | None) -> dict[str, float]:
    seeds = [EVAL_SEED + i for i in range(args.eval_episodes)]
    ep = real_episodes([theta] * len(seeds), seeds, np.random.default_rng(args.seed + 2))
    return {"return": float(ep.returns.mean()), "success": float(ep.true_success.mean())}


start = time.time()
envs = gym.make_vec("worldsim/WorldModel-v0", num_envs=args.num_envs, vectorization_mode="vector_entry_point",
                    model=wm, max_episode_steps=None,
                    session_kwargs={"temperature": args.temperature, "context": args.context})
theta_imagined, hist_imagined = train(lambda th, s, rng: imagined_episodes(envs, th, s, rng), "imagination")
envs.close()
imagination_s = time.time() - start
theta_real, hist_real = train(real_episodes, "real world")
results = {"imagination": evaluate(theta_imagined), "real": evaluate(theta_real), "random": evaluate(None)}
real, imag, rand = (results[k]["return"] for k in ("real", "imagination", "random"))
# imagination / real returns (meaningful while the real-trained return is > 0), and the same for the gains over random
ratios = {"return": imag / real if real > 0 else None,
          "improvement_over_random": (imag - rand) / (real - rand) if real > rand else None,
          "success": results["imagination"]["success"] / results["real"]["success"] if results["real"]["success"]
          else None}
env_steps = args.iterations * args.num_envs * args.episode_steps
print(f"trained on {args.iterations} × {args.num_envs} episodes of ≤ {args.episode_steps} steps (≤ {env_steps} env "
      f"steps) in each world; imagination took {imagination_s:.0f} s")
print(f"real-world evaluation on {args.eval_episodes} held-out layouts (world seeds ≥ {EVAL_SEED}):")
for name in ("imagination", "real", "random"):
    print(f"  {name:>11}: return {results[name]['return']:6.2f}, success {results[name]['success']:.2f}")
print("imagination / real: " + ", ".join(f"{k.replace('_', ' ')} {'n/a' if v is None else f'{v:.2f}'}"
                                         for k, v in ratios.items()))
if args.json:
    with open(args.json, "w") as f:
        json.dump({**vars(args), "env_steps": env_steps, "imagination_seconds": imagination_s, "results": results,
                   "ratios": ratios, "theta": {"imagination": theta_imagined.tolist(), "real": theta_real.tolist()},
                   "history": {"imagination": hist_imagined, "real": hist_real}}, f, indent=2)
