"""What if? Record a real PushWorld clip, then replay its exact noise under other actions from step k.

Writes a PNG (recorded above, counterfactual below) and an mp4 of the two side by side.

    python examples/what_if.py [--model pushworld-64] [--out what_if] [--frames 16] [--from-step 4]
"""

import argparse

import cv2
import numpy as np

import worldsim
from worldsim.envs import PushWorld

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64", help="bundled model name or checkpoint directory")
p.add_argument("--out", default="what_if", help="output stem: <out>.png and <out>.mp4")
p.add_argument("--frames", type=int, default=16)
p.add_argument("--from-step", type=int, default=4)
args = p.parse_args()

wm = worldsim.WorldModel.from_pretrained(args.model)
world = PushWorld(render_mode="rgb_array", size=wm.config.height, action_mode="text")
frame, _ = world.reset(seed=1)
frames, actions = [frame], []
for _ in range(args.frames - 1):  # the recording: the agent walks right
    frame, *_ = world.step("move right")
    frames.append(frame)
    actions.append("move right")
clip = np.stack(frames)
new_actions = actions[: args.from_step - 1] + ["move down"] * (args.frames - args.from_step)  # what if it went down?
alt = wm.counterfactual(clip, actions, new_actions, from_step=args.from_step)

grid = np.concatenate([np.concatenate(list(clip), 1), np.concatenate(list(alt), 1)], 0)
cv2.imwrite(f"{args.out}.png", cv2.cvtColor(np.kron(grid, np.ones((2, 2, 1), np.uint8)), cv2.COLOR_RGB2BGR))
h, w = wm.config.height, wm.config.width
video = cv2.VideoWriter(f"{args.out}.mp4", cv2.VideoWriter_fourcc(*"mp4v"), wm.config.fps, (8 * w, 4 * h))
for a, b in zip(clip, alt, strict=True):
    pair = np.concatenate([a, b], 1)
    video.write(cv2.cvtColor(np.kron(pair, np.ones((4, 4, 1), np.uint8)), cv2.COLOR_RGB2BGR))
video.release()
print(f"wrote {args.out}.png and {args.out}.mp4: recorded (right) vs replayed from step {args.from_step} (down)")
