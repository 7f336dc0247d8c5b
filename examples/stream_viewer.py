"""Watch a bridge server's frame stream: show the frames in a window (OpenCV) when there is a display, else write an
mp4, and print how old each frame was on arrival (p50/p90/p99 of arrival time minus its generation time).

    python examples/stream_viewer.py [--model pushworld-64] [--steps 64]      # its own server and a driving client
    python examples/stream_viewer.py --address tcp://HOST:5555                # a running `worldsim serve` (PUB on 5556)
"""

import argparse
import os
import sys
import threading
import time

import cv2
import numpy as np

from worldsim.bridges import BridgeServer, BridgeTimeout, FrameSubscriber, RemoteWorldModel
from worldsim.demo import load_model
from worldsim.envs.world_model_env import world_frame

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64", help="model to serve in-process (without --address)")
p.add_argument("--steps", type=int, default=64, help="frames to receive")
p.add_argument("--address", help="control endpoint of a running server; without it, serve --model here")
p.add_argument("--stream", help="its frame-stream endpoint (default: the --address port + 1, as `worldsim serve`)")
p.add_argument("--out", default="stream.mp4", help="video written when there is no display (or with --no-window)")
p.add_argument("--no-window", action="store_true", help="write the video even when a display exists")
p.add_argument("--timeout", type=float, default=30.0, help="give up after this many seconds without a frame")
args = p.parse_args()


def drive(port: int, height: int, width: int, done: threading.Event) -> None:
    """A client that steps one session with random actions until the viewer has its frames."""
    with RemoteWorldModel(port, timeout_s=60.0) as client, client.session(seed=0) as s:
        s.reset(frames=world_frame(height, width, 0))
        rng, vocab = np.random.default_rng(0), client.vocabulary
        for _ in range(20 * args.steps):  # frames sent before the subscription reached the server are lost
            if done.is_set():
                break
            s.step(vocab[int(rng.integers(len(vocab)))])


server = driver = None
done = threading.Event()
if args.address is None:
    wm, note = load_model(args.model)
    if note:
        print(note)
    server = BridgeServer(wm, pub_address="tcp://127.0.0.1:0").start()
    stream = server.pub_endpoint
    driver = threading.Thread(target=drive, args=(server.port, wm.config.height, wm.config.width, done), daemon=True)
    print(f"serving {wm} in-process on {server.endpoint}, frames on {stream}")
else:
    host, port = args.address.rsplit(":", 1)
    stream = args.stream or f"{host}:{int(port) + 1}"

window = (bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or sys.platform in ("win32", "darwin")
          ) and not args.no_window
frames, ages, streams = [], [], set()
with FrameSubscriber(stream) as sub:
    if driver is not None:
        driver.start()
    while len(frames) < args.steps:
        try:
            head, frame = sub.recv(timeout_s=args.timeout)
        except BridgeTimeout:
            print(f"no frame for {args.timeout:g} s; stopping")
            break
        ages.append(time.time() - head["time"])  # same clock when on one machine; else keep the clocks synced
        streams.add(head["stream"])
        big = cv2.cvtColor(np.kron(frame, np.ones((4, 4, 1), np.uint8)), cv2.COLOR_RGB2BGR)
        if window:
            try:
                cv2.imshow("worldsim stream", big)
                cv2.waitKey(1)
            except cv2.error:  # an OpenCV build without GUI support: write the video instead
                window = False
        frames.append(big)
done.set()
if driver is not None:
    driver.join(timeout=60)
if server is not None:
    server.stop()

if ages:
    p50, p90, p99 = np.percentile(np.array(ages) * 1000, [50, 90, 99])
    print(f"received {len(frames)} frames from {len(streams)} stream(s); "
          f"latency ms (arrival - generation): p50 {p50:.1f}  p90 {p90:.1f}  p99 {p99:.1f}")
if frames and not window:
    h, w = frames[0].shape[:2]
    video = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"mp4v"), 16, (w, h))
    for f in frames:
        video.write(f)
    video.release()
    print(f"wrote {args.out} ({len(frames)} frames)")
