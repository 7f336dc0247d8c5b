"""The ten-line tour: load a model, start from a real PushWorld frame, step with text actions, save an mp4.

    python examples/rollout.py [--model pushworld-64] [--out rollout.mp4] [--steps 32]
"""

import argparse

import cv2
import numpy as np

import worldsim
from worldsim.envs import PushWorld

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64", help="bundled model name or checkpoint directory")
p.add_argument("--out", default="rollout.mp4")
p.add_argument("--steps", type=int, default=32)
args = p.parse_args()

wm = worldsim.WorldModel.from_pretrained(args.model)
first, _ = PushWorld(render_mode="rgb_array", size=wm.config.height).reset(seed=0)
with wm.session(seed=0) as s:
    s.reset(frames=first[None])
    for action in (["move right"] * 8 + ["move down"] * 8 + ["move left"] * 8 + ["move up"] * 8)[: args.steps]:
        out = s.step(action)
        print(f"{action:<11} {out.bits_per_dim:.3f} {wm.config.likelihood_space} bits/dim")
    frames = s.history  # uint8 (T, H, W, 3)

size = (4 * wm.config.width, 4 * wm.config.height)
video = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"mp4v"), wm.config.fps, size)
for f in frames:
    video.write(cv2.cvtColor(np.kron(f, np.ones((4, 4, 1), np.uint8)), cv2.COLOR_RGB2BGR))
video.release()
print(f"wrote {args.out} ({len(frames)} frames)")
