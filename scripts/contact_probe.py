"""Does the model push the block when the agent only clips its corner? PushWorld pushes the block whenever the agent
overlaps it at all, so a push from behind the block's centre and one that clips a corner move it alike.

For each lateral offset of the agent from the block's centre line (0 = straight behind, 7 px = just clipping a
corner), direction and random layout: two real frames show the agent walking towards the block, then the agent
keeps walking for --steps steps, in the real world and in one batched imagined session. Reports per offset the
block's mean displacement in both and how often the imagined block moved at least half as far as the real one.

    python scripts/contact_probe.py --model pushworld-64 --layouts 4 --steps 3
"""

import argparse

import numpy as np

from worldsim import WorldModel
from worldsim.envs import PushWorld
from worldsim.envs.push_task import gap
from worldsim.envs.pushworld import detect_objects

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64")
p.add_argument("--layouts", type=int, default=4, help="random block places per offset and direction")
p.add_argument("--offsets", default="0,1,2,3,4,5,6,7", help="lateral offsets of the agent, px at 64×64")
p.add_argument("--steps", type=int, default=3, help="steps walked into the block after the two real frames")
p.add_argument("--seed", type=int, default=0)
p.add_argument("--guidance", type=float, help="classifier-free guidance weight on the actions (default: the model's)")
p.add_argument("--temperature", type=float, help="sampling temperature (default: the model's)")
args = p.parse_args()

wm = WorldModel.from_pretrained(args.model)
size = wm.config.height
s = size / 64
offsets = [float(o) for o in args.offsets.split(",")]
directions = {"move up": (0, -1), "move down": (0, 1), "move left": (-1, 0), "move right": (1, 0)}
rng = np.random.default_rng(args.seed)

cases, firsts, reals = [], [], []
for offset in offsets:
    for action, (dx, dy) in directions.items():
        for _ in range(args.layouts):
            block = rng.uniform(24 * s, 40 * s, size=2)
            along, across = np.array([dx, dy], float), np.array([dy, dx], float) * rng.choice([-1, 1])
            # 12 px behind; after the first real step 9 px (not yet touching); the next step overlaps the block
            agent = block - along * 12 * s + across * offset * s
            goal = np.clip(block - along * 16 * s - across * 12 * s, 10 * s, 54 * s)  # behind, beside: out of the way
            env = PushWorld(render_mode="rgb_array", size=size, action_mode="text")
            f0, info = env.reset(seed=0, options={"agent_pos": tuple(agent), "block_pos": tuple(block),
                                                  "goal_pos": tuple(goal)})
            f1, *_ = env.step(action)
            start = info["block_pos"]
            for _ in range(args.steps):
                *_, info = env.step(action)
            cases.append((offset, action, start))
            firsts.append(np.stack([f0, f1]))
            reals.append(gap(info["block_pos"], start))

actions = [a for _, a, _ in cases]
settings = {k: v for k, v in (("guidance", args.guidance), ("temperature", args.temperature)) if v is not None}
with wm.session(seed=args.seed, batch_size=len(cases), **settings) as session:
    session.reset(frames=np.stack(firsts), actions=[actions])
    for _ in range(args.steps):
        out = session.step(actions)
found = [detect_objects(frame)["block_pos"] for frame in out.frame]

print(f"{'offset px':>9}  {'real moved':>10}  {'imagined moved':>14}  {'imagined ≥ half of real':>23}  block lost")
for offset in offsets:
    rows = [i for i, (o, _, _) in enumerate(cases) if o == offset]
    imagined = [gap(found[i], cases[i][2]) if found[i] is not None else np.nan for i in rows]
    real = [reals[i] for i in rows]
    moved = [m >= 0.5 * r for m, r in zip(imagined, real, strict=True) if not np.isnan(m)]
    shown = f"{np.nanmean(imagined):12.1f} px  {np.mean(moved):23.2f}" if moved else f"{'–':>15}  {'–':>23}"
    print(f"{offset:9.0f}  {np.mean(real):8.1f} px  {shown}  {np.mean(np.isnan(imagined)):10.2f}")
