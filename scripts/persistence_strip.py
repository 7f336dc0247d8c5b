"""Look at one of `worldsim eval`'s long rollouts: real world (top) vs imagined (bottom), with the frames where the
detector cannot find the block marked.

    python scripts/persistence_strip.py --model pushworld-64 --rollout 12 --episodes 16 --start 24 --end 52 \\
        --out docs/persistence.png

`--rollout i` and `--episodes N` pick the same world, actions and session seed as `worldsim eval --episodes N`
(seed 10000). The real world ends at a success; after that only the imagined row goes on.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from worldsim import WorldModel
from worldsim.eval_metrics import detect, held_out_clip, long_actions

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64")
p.add_argument("--rollout", type=int, default=0)
p.add_argument("--episodes", type=int, default=32)
p.add_argument("--seed", type=int, default=10_000)
p.add_argument("--start", type=int, default=0, help="first imagined frame shown")
p.add_argument("--end", type=int, default=48, help="one past the last imagined frame shown")
p.add_argument("--every", type=int, default=2)
p.add_argument("--best-of", type=int, default=1, help="Session best_of (candidates per frame, likeliest kept)")
p.add_argument("--out", required=True)
args = p.parse_args()

wm = WorldModel.from_pretrained(args.model)
context = 2  # as in worldsim eval
clip = held_out_clip(wm.config.height, args.seed, args.rollout, args.episodes, context + 16)
real, actions = long_actions(wm.config.height, clip.world_seed, context - 1 + args.end)
with wm.session(seed=args.seed + args.rollout, best_of=args.best_of) as s:
    s.reset(frames=clip.frames[:context], actions=clip.actions[:context - 1])
    imagined = [s.step(a).frame for a in actions[context - 1:]]

lost = [j for j, frame in enumerate(imagined) if detect(frame)["block"] is None]
shown = list(range(args.start, args.end, args.every))
fig, axes = plt.subplots(2, len(shown), figsize=(1.1 * len(shown), 2.6), squeeze=False)
for col, j in enumerate(shown):
    t = j + context  # imagined frame j is real frame context + j
    pictures = (real.frames[t] if t < len(real.frames) else None, imagined[j])
    for row, frame in enumerate(pictures):
        ax = axes[row, col]
        ax.set_xticks([]), ax.set_yticks([])
        if frame is None:
            ax.set_facecolor("white")
            continue
        ax.imshow(frame)
        if row == 1 and j in lost:
            for spine in ax.spines.values():
                spine.set_color("red"), spine.set_linewidth(2)
    axes[0, col].set_title(f"{j}", fontsize=7)
axes[0, 0].set_ylabel("real", fontsize=8)
axes[1, 0].set_ylabel("imagined", fontsize=8)
fig.suptitle(f"{args.model}: long rollout {args.rollout} (world seed {clip.world_seed}), best_of={args.best_of}; "
             "red: block not found",
             fontsize=9)
fig.tight_layout()
fig.savefig(args.out, dpi=110)
print(f"wrote {args.out}; block not found in imagined frames {lost[:12]} …")
