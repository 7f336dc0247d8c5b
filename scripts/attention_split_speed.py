"""Time one training step (forward + backward, bf16 autocast) of the small preset with the deep block's windowed
attention chunks (`band_blocks`) and with one masked attention over the whole clip, interleaved.

    python scripts/attention_split_speed.py --frames 32 --batch 8 [--threads 1] [--repeats 3]
"""

import argparse
import time

import numpy as np
import torch

import worldsim.model.deep as deep
from worldsim.config import preset
from worldsim.model.flow import FlowNet
from worldsim.objectives import Batch
from worldsim.train import TrainStep

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--frames", type=int, default=32)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--repeats", type=int, default=3)
args = p.parse_args()
torch.set_num_threads(args.threads)

step = TrainStep(FlowNet(preset("small")))
b, t = args.batch, args.frames
frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (b, t, 64, 64, 3), dtype=np.uint8))
batch = Batch(frames, [["move up"] * (t - 1)] * b, [None] * b, torch.zeros(b, t - 1), torch.zeros(b, t - 1))
split = deep.band_blocks


def seconds(chunked: bool) -> float:
    deep.band_blocks = split if chunked else (lambda *_: None)
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = step(batch, torch.Generator().manual_seed(0), 0)
    loss.backward()
    step.zero_grad()
    return time.perf_counter() - start


seconds(True), seconds(False)  # warm-up
times: dict[bool, list[float]] = {True: [], False: []}
for _ in range(args.repeats):
    for chunked in (True, False):
        times[chunked].append(seconds(chunked))
best = {c: min(v) for c, v in times.items()}
print(f"{b} clips x {t} frames, {args.threads} thread(s): windowed chunks {best[True]:.2f} s, one masked attention "
      f"{best[False]:.2f} s per step ({best[False] / best[True]:.2f}x)")
