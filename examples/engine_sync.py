"""An external engine in lock-step with a served world model; the real PushWorld plays the engine. Every step the
engine sends its real frame and the action that led to it (`observe`) and gets back how plausible the model finds
the frame (its log-likelihood), and asks a fork of the session for the frame K steps ahead under the engine's next
K planned actions. When that real frame arrives, the table shows how far the prediction was, beside the error of
simply repeating the frame the prediction started from.

    python examples/engine_sync.py [--model pushworld-64] [--steps 24] [--ahead 4]
    python examples/engine_sync.py --address tcp://HOST:5555          # a running `worldsim serve`
"""

import argparse
import math

import numpy as np

from worldsim.bridges import BridgeServer, RemoteWorldModel
from worldsim.demo import load_model
from worldsim.envs import PushWorld

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--model", default="pushworld-64", help="model to serve in-process (without --address)")
p.add_argument("--address", help="control endpoint of a running server; without it, serve --model here")
p.add_argument("--steps", type=int, default=24, help="engine steps")
p.add_argument("--ahead", type=int, default=4, help="K: how many steps ahead each prediction looks")
p.add_argument("--seed", type=int, default=0, help="seeds the world layout, the engine's plan and the session")
args = p.parse_args()

server = None
if args.address is None:
    wm, note = load_model(args.model)
    if note:
        print(note)
    server = BridgeServer(wm).start()
    address = server.endpoint
    print(f"serving {wm} in-process on {address}")
else:
    address = args.address

with RemoteWorldModel(address, timeout_s=120.0) as client:
    cfg = client.config
    world = PushWorld(render_mode="rgb_array", size=cfg.height, action_mode="text")
    rng = np.random.default_rng(args.seed)
    plan, a = [], "stay"  # the engine's inputs, known a few steps ahead (held actions, like a player's)
    for _ in range(args.steps + args.ahead):
        a = a if rng.random() < 0.7 else world.vocabulary[int(rng.integers(len(world.vocabulary)))]
        plan.append(a)
    frame, _ = world.reset(seed=args.seed)
    predicted: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # step → (prediction, frame it started from)
    print(f"{'step':>4}  {'action':<11} {'log p (nats)':>12} {'bits/dim':>8}  "
          f"{f'{args.ahead}-ahead error':>15} {'repeat-frame error':>18}")
    with client.session(seed=args.seed, temperature=0.6, context="frame") as s:
        s.reset(frames=frame[None])
        for t in range(1, args.steps + 1):
            action = plan[t - 1]
            frame, *_ = world.step(action)  # the engine moves on
            log_p = s.observe(frame, action=action)  # the model sees the real frame: how plausible was it?
            bpd = -log_p / (cfg.dims_per_frame * math.log(2))
            with s.fork(seed=t) as ahead:  # imagine K steps of the engine's plan from here
                for k in range(args.ahead):
                    guess = ahead.step(plan[t + k]).frame
            predicted[t + args.ahead] = (guess, frame)
            error = repeat = ""
            if t in predicted:
                guess_t, start = predicted.pop(t)
                error = f"{np.abs(guess_t.astype(int) - frame).mean():.2f}"
                repeat = f"{np.abs(start.astype(int) - frame).mean():.2f}"
            print(f"{t:>4}  {action:<11} {log_p:>12.1f} {bpd:>8.3f}  {error:>15} {repeat:>18}")
print(f"errors: mean |pixel difference| (0-255) between the real frame and the frame predicted {args.ahead} steps "
      f"earlier, or the real frame of {args.ahead} steps earlier; {cfg.likelihood_space} bits/dim")
if server is not None:
    server.stop()
