"""Is this video physically plausible? Score a real PushWorld clip and a copy where the block enters the wall.

Writes both clips as PNG image sequences, scores them with `worldsim score`'s function (per-frame surprise,
calibrated verdicts, heat maps of where each frame stops being plausible) and prints the verdicts side by side.

    python examples/score_video.py [--model pushworld-64] [--out score_video] [--frames 24] [--edit-at 12]
"""

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

import worldsim
from worldsim.envs.pushworld_eval import held_out_clip, implausible_clip
from worldsim.scoring import score_video

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64", help="bundled model name or checkpoint directory")
p.add_argument("--out", default="score_video", help="output folder")
p.add_argument("--frames", type=int, default=24)
p.add_argument("--edit-at", type=int, default=12, help="first frame of the implausible event")
p.add_argument("--seed", type=int, default=30_000, help="world seed of the recorded clip")
args = p.parse_args()

wm = worldsim.WorldModel.from_pretrained(args.model)
clip = held_out_clip(wm.config.height, args.seed, 0, 1, args.frames)  # a real clip: PushWorld + a scripted pusher
edit_seed = next(s for s in range(100)  # the edit that moves the block (not the agent) into the nearest wall
                 if implausible_clip("wall", clip, args.edit_at, np.random.default_rng(s))[1]["object"] == "block")
edited, info = implausible_clip("wall", clip, args.edit_at, np.random.default_rng(edit_seed))

out = Path(args.out)
reports = {}
for name, frames in (("real", clip.frames), ("edited", edited)):
    folder = out / name / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):  # PNG: lossless (mp4 compression adds surprise of its own)
        cv2.imwrite(str(folder / f"{t:03d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    actions = out / name / "actions.jsonl"
    actions.write_text(json.dumps({"video": "%03d.png", "actions": clip.actions}) + "\n")
    reports[name] = score_video(wm, folder / "%03d.png", out / name, actions, progress=False)

print(f"the block is moved into the {info['wall']} wall at frame {args.edit_at}")
calibrated = reports["real"]["calibrated"]
print(f"{'frame':>5}  {'real bits/dim':>13}  {'edited bits/dim':>15}" + ("  verdict (edited)" if calibrated else ""))
for real, fake in zip(reports["real"]["per_frame"], reports["edited"]["per_frame"], strict=True):
    verdict = ""
    if calibrated:
        verdict = ("IMPLAUSIBLE" if fake["implausible"] else "ok") + f" ({fake['percentile']:.1f} pct)"
    print(f"{real['t']:>5}  {real['bits_per_dim']:>13.3f}  {fake['bits_per_dim']:>15.3f}  {verdict}")
for name, r in reports.items():
    print(f"{name}: implausible frames {r['implausible_frames'] if calibrated else 'n/a (uncalibrated model)'}; "
          f"picture {r['png']}")
