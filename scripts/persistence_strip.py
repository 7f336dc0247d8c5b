"""Look at `worldsim eval`'s long rollouts: real world vs imagined, two rows per rollout, with the frames where the
detector cannot find the block marked.

    python scripts/persistence_strip.py --model pushworld-64 --rollout 12 --episodes 16 --start 24 --end 52 \\
        --out rollout12.png
    python scripts/persistence_strip.py --rollout 12:28 --rollout 5:94 --rollout 10:150 --episodes 16 \\
        --start 0 --end 24 --out docs/persistence_failures.png

`--rollout i` and `--episodes N` pick the same world, actions and session seed as `worldsim eval --episodes N`
(seed 10000). `--rollout i:S` shows that rollout from imagined frame S on, over as many frames as `--start` to
`--end`. The real world ends at a success; after that only the imagined row goes on.
"""

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from worldsim import WorldModel
from worldsim.envs.pushworld_eval import detect, held_out_clip, long_actions

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64")
p.add_argument("--rollout", action="append", default=None,
               help="rollout index i, or i:S to start that rollout's window at imagined frame S (repeatable)")
p.add_argument("--episodes", type=int, default=32)
p.add_argument("--seed", type=int, default=10_000)
p.add_argument("--start", type=int, default=0, help="first imagined frame shown")
p.add_argument("--end", type=int, default=48, help="one past the last imagined frame shown")
p.add_argument("--every", type=int, default=2)
p.add_argument("--best-of", type=int, default=1, help="Session best_of (candidates per frame, likeliest kept)")
p.add_argument("--out", required=True)
args = p.parse_args()


def parse_rollout(text: str) -> tuple[int, int]:
    index, _, start = text.partition(":")
    try:
        return int(index), int(start) if start else args.start
    except ValueError:
        p.error(f"--rollout takes i or i:S (integers), got {text!r}")


windows = [parse_rollout(text) for text in args.rollout or ["0"]]
if args.end <= args.start:
    p.error(f"--end ({args.end}) must be larger than --start ({args.start})")
wm = WorldModel.from_pretrained(args.model)
context = 2  # as in worldsim eval
offsets = range(0, args.end - args.start, args.every)
fig, axes = plt.subplots(2 * len(windows), len(offsets), figsize=(1.1 * len(offsets), 2.6 * len(windows)),
                         squeeze=False)
for w, (rollout, start) in enumerate(windows):
    end = start + args.end - args.start
    clip = held_out_clip(wm.config.height, args.seed, rollout, args.episodes, context + 16)
    real, actions = long_actions(wm.config.height, clip.world_seed, context - 1 + end)
    with wm.session(seed=args.seed + rollout, best_of=args.best_of) as s:
        s.reset(frames=clip.frames[:context], actions=clip.actions[:context - 1])
        imagined = [s.step(a).frame for a in actions[context - 1:]]
    lost = [j for j, frame in enumerate(imagined) if detect(frame)["block"] is None]
    for col, j in enumerate(start + k for k in offsets):
        t = j + context  # imagined frame j is real frame context + j
        pictures = (real.frames[t] if t < len(real.frames) else None, imagined[j])
        for row, frame in enumerate(pictures):
            ax = axes[2 * w + row, col]
            ax.set_xticks([]), ax.set_yticks([])
            if frame is None:
                ax.set_facecolor("white")
                continue
            ax.imshow(frame)
            if row == 1 and j in lost:
                for spine in ax.spines.values():
                    spine.set_color("red"), spine.set_linewidth(2)
        axes[2 * w, col].set_title(f"{j}", fontsize=7)
    axes[2 * w, 0].set_ylabel(f"real {rollout}", fontsize=8)
    axes[2 * w + 1, 0].set_ylabel(f"imagined {rollout}", fontsize=8)
    print(f"rollout {rollout} (world seed {clip.world_seed}): block not found in imagined frames {lost[:12]} …")
fig.suptitle(f"{args.model}: long rollouts {', '.join(str(r) for r, _ in windows)} of `worldsim eval --episodes "
             f"{args.episodes}`, best_of={args.best_of}; red: block not found", fontsize=9)
fig.tight_layout()
fig.savefig(args.out, dpi=110)
print(f"wrote {args.out}")
