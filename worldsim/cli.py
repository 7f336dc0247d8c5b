"""The `worldsim` command: one entry point with subcommands (demo, info, record, train, eval, plan, …)."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from .argtypes import positive_int
from .errors import WorldSimError

# `record --policy` is free text checked at run time against "random" and the policies of the env's world in
# the registry (worldsim.worlds), so plug-in worlds add theirs and building the parser imports no gymnasium.

# Subcommands whose arguments and handler live in their own module: `add_arguments(parser)` and `run(args) -> int`.
MODULE_COMMANDS = {
    "train": ("worldsim.train", "train a model on a recorded dataset (resumable; runs under torchrun too)"),
    "eval": ("worldsim.evaluate", "measure a model against the ground-truth world (JSON report)"),
    "score": ("worldsim.scoring", "per-frame and per-patch surprise of a video, with calibrated verdicts"),
    "bench": ("worldsim.bench", "measure speed as ratios on this machine, against the targets (JSON report)"),
    "plan": ("worldsim.plan_goals", "plan to goal images from held-out episodes: model vs real simulator vs random, "
                                    "success rates with Wilson intervals (JSON report)"),
}


# ----- handlers -------------------------------------------------------------------------------------------------
def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, model=args.model, steps=args.steps, seed=args.seed, echo=print)
    return 0


def _info(args: argparse.Namespace) -> int:
    import torch

    from . import __version__, bundled_models

    print(f"worldsim {__version__} (python {sys.version.split()[0]})")
    print(f"bundled models: {', '.join(bundled_models()) or 'none yet'}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"CUDA {'available' if torch.cuda.is_available() else 'not available'}")
    if args.model is None:
        return 0
    from .demo import load_model

    wm, note = load_model(args.model)
    cfg = wm.config
    params = sum(p.numel() for p in wm.net.parameters())
    codec = (f"pixels, {cfg.codec.patch}×{cfg.codec.patch} patches" if cfg.codec.kind == "pixels" else
             f"latent, ÷{cfg.codec.downsample} → {cfg.codec.latent_channels} channels")
    print(f"\nmodel {args.model}")
    if note:
        print(note)
    rows = [
        ("name", cfg.name),
        ("frames", f"{cfg.height}×{cfg.width} RGB at {cfg.fps} fps"),
        ("codec", codec),
        ("tokens", f"{cfg.tokens_per_frame} per frame × {cfg.token_dim} dims"),
        ("local blocks", f"{cfg.local.blocks} × {cfg.local.layers} layers, width {cfg.local.width}"),
        ("deep block", f"{cfg.deep.layers} layers, width {cfg.deep.width}, window {cfg.deep.window} frames"),
        ("denoiser", f"{cfg.denoiser.layers} layers" if cfg.denoiser.enabled else "off (causal Tweedie)"),
        ("actions", ", ".join(cfg.actions)),
        ("parameters", f"{params:,} ({params / 1e6:.2f}M)"),
        ("likelihood", f"exact, over {cfg.likelihood_space} ({cfg.likelihood_space[:-1]} bits/dim)"),
    ]
    rows += [(f"meta.{key}", str(value)) for key, value in sorted(wm.meta.items())]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0


def _record(args: argparse.Namespace) -> int:
    sources = {"--env": args.env, "--import-videos": args.import_videos, "--import-lerobot": args.import_lerobot,
               "--import-minari": args.import_minari}
    if sum(v is not None for v in sources.values()) != 1:
        args.subparser.error("give one of --env ID --episodes N, --import-videos DIR --actions FILE.jsonl, "
                             "--import-lerobot DIR, --import-minari NAME|PATH")
    if args.camera is not None and args.import_lerobot is None:
        args.subparser.error("--camera goes with --import-lerobot")
    if args.obs_key is not None and args.import_minari is None:
        args.subparser.error("--obs-key goes with --import-minari")
    if args.import_lerobot is not None:
        from .importers.lerobot import import_lerobot

        path = import_lerobot(args.import_lerobot, args.out, camera=args.camera, size=args.size,
                              episodes=args.episodes, overwrite=args.overwrite, action_low=args.action_low,
                              action_high=args.action_high)
    elif args.import_minari is not None:
        from .importers.minari import import_minari

        path = import_minari(args.import_minari, args.out, size=args.size, obs_key=args.obs_key,
                             episodes=args.episodes, overwrite=args.overwrite, action_low=args.action_low,
                             action_high=args.action_high)
    elif args.import_videos is not None:
        if args.actions is None:
            args.subparser.error("--import-videos needs --actions FILE.jsonl")
        from .video import import_videos

        path = import_videos(args.import_videos, args.actions, args.out, size=args.size, overwrite=args.overwrite,
                             action_low=args.action_low, action_high=args.action_high)
    else:
        if args.episodes is None:
            args.subparser.error("--env needs --episodes N")
        from .record import record_dataset

        path = record_dataset(args.env, args.episodes, args.out, policy=args.policy, seed=args.seed,
                              max_steps=args.max_steps, overwrite=args.overwrite,
                              after_end=args.after_end, size=args.size, action_low=args.action_low,
                              action_high=args.action_high)
    from .dataset import Dataset

    data = Dataset(path)
    h, w = data.frame_size
    print(f"wrote {path}: {len(data)} episodes, {sum(data.episode_lengths)} frames of {h}×{w} at {data.fps:g} fps")
    if data.has_actions:
        print(f"actions: {data.action_spec.describe()}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .bridges import BridgeServer
    from .demo import load_model

    wm, note = load_model(args.model, dtype=args.dtype)
    if note:
        print(note, flush=True)
    host = args.bind
    pub = f"tcp://{host}:{args.port + 1 if args.port else 0}"  # port 0: both on free ports (`hello` reports them)
    curve: dict[str, Any] = {}
    if args.curve_keys:
        from .bridges.auth import load_key_folder

        public, secret, allowed = load_key_folder(args.curve_keys)
        curve = {"curve_public_key": public, "curve_secret_key": secret, "allowed_client_keys": allowed}
    server = BridgeServer(wm, f"tcp://{host}:{args.port}", pub_address=pub, batch_window_ms=args.batch_window_ms,
                          max_batch=args.max_batch, max_sessions=args.max_sessions,
                          max_sessions_per_client=args.max_sessions_per_client, idle_timeout_s=args.idle_timeout,
                          private_stream=not args.open_stream, name=Path(args.model).name, **curve)
    server.bind()
    privacy = "open to any subscriber" if args.open_stream else "private: each session's own stream id"
    print(f"serving {wm} on {server.endpoint} (frames on {server.pub_endpoint}, {privacy}; at most "
          f"{args.max_sessions} sessions) (Ctrl-C stops)", flush=True)
    if curve:
        print(f"CURVE on: clients need the server key {args.curve_keys}/server.key; "
              f"{len(curve['allowed_client_keys'])} allowed client key(s) from {args.curve_keys}/clients", flush=True)

    def terminate(*_: object) -> None:  # SIGTERM shuts down like Ctrl-C: sockets closed, exit 0
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    server.serve_forever()
    return 0


def _play(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .demo import load_model
    from .play.server import serve

    wm, note = load_model(args.model)
    if note:
        print(note, flush=True)
    serve(wm, Path(args.model).name, args.bind, args.port, open_browser=not args.no_browser,
          allow_origins=args.allow_origin, echo=lambda line: print(line, flush=True))
    return 0


# ----- parser ---------------------------------------------------------------------------------------------------
def _module(name: str) -> ModuleType | None:
    """The subcommand's module, or None while it is not part of this install (other import errors propagate)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    """The `worldsim` argument parser with every available subcommand."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")
    parser = argparse.ArgumentParser(
        prog="worldsim", description="Interactive world simulator on a causal normalizing-flow video model.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    subs = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = subs.add_parser(name, help=help_text, description=help_text, parents=[common])
        sub.set_defaults(subparser=sub)
        return sub

    p = add("demo", "imagine PushWorld under scripted actions beside the real world; write mp4, PNG, JSON")
    p.add_argument("--out", required=True, help="output folder for rollout.mp4, filmstrip.png, summary.json")
    p.add_argument("--model", default="pushworld-64",
                   help="bundled model name, checkpoint directory, or preset name (untrained); default: %(default)s")
    p.add_argument("--steps", type=positive_int, default=48, help="frames to imagine (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="world layout and sampling seed (default: %(default)s)")
    p.set_defaults(handler=_demo)

    p = add("info", "show the version, bundled models, torch set-up, and a model's config and metadata")
    p.add_argument("--model", help="bundled model name, checkpoint directory, or preset name")
    p.set_defaults(handler=_info)

    p = add("record", "record a Gymnasium env into a dataset, or import videos, a LeRobot or a Minari dataset")
    p.add_argument("--out", required=True, help="dataset folder to write")
    p.add_argument("--overwrite", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--env", help="registered env id, e.g. worldsim/PushWorld-v0 (needs --episodes)")
    p.add_argument("--episodes", type=positive_int,
                   help="episodes to record; with --import-lerobot/--import-minari: import only the first N")
    p.add_argument("--policy", metavar="NAME",
                   help="data policy: 'random' (any env) or one of the env's world (PushWorld: pushworld, "
                        "pushworld-walls adds segments that press the block into a wall, pushworld-contacts also "
                        "segments that clip its corner); default: the world's own, else random")
    p.add_argument("--seed", type=int, default=0, help="base seed: episode i resets with seed+i (default: 0)")
    p.add_argument("--max-steps", type=positive_int, help="cap on steps per episode (default: the env's limit)")
    p.add_argument("--after-end", type=int, default=0, metavar="N",
                   help="keep recording N steps after an episode terminates (the world goes on after a success)")
    p.add_argument("--import-videos", metavar="DIR", help="folder of videos to import instead of recording")
    p.add_argument("--actions", metavar="FILE.jsonl",
                   help='with --import-videos: one {"video", "actions", "caption"} object per line')
    p.add_argument("--import-lerobot", metavar="DIR",
                   help="LeRobot dataset folder (v3.0 or v2.x: meta/, data/, videos/) to import: one camera's frames, "
                        "`action` as vector actions (see docs/importing-datasets.md)")
    p.add_argument("--camera", metavar="KEY",
                   help="with --import-lerobot: the camera (video or image feature) to import, e.g. "
                        "observation.images.top (default: the only one)")
    p.add_argument("--import-minari", metavar="NAME|PATH",
                   help="Minari dataset to import: an id in the local Minari root (MINARI_DATASETS_PATH) or a path; "
                        "image observations, Discrete or Box actions; nothing is downloaded")
    p.add_argument("--obs-key", metavar="KEY",
                   help="with --import-minari and dict observations: the image's key (default: the only image)")
    p.add_argument("--size", type=positive_int,
                   help="resize frames to SIZE×SIZE (area averaging): the env's renders, or the imported frames")
    p.add_argument("--action-low", type=float, nargs="+", metavar="X",
                   help="lower bound of vector actions: one value for every component or one per component "
                        "(a Box env with infinite bounds; imports: numeric --import-videos actions, else their min; "
                        "--import-lerobot, else meta/stats.json's min, else the data's)")
    p.add_argument("--action-high", type=float, nargs="+", metavar="X",
                   help="upper bound of vector actions, as --action-low (numeric imports: else their max)")
    p.set_defaults(handler=_record)

    p = add("serve", "serve a model over the ZeroMQ bridge (control ROUTER on PORT, frame PUB on PORT+1)")
    p.add_argument("--model", default="pushworld-64", help="bundled model name, checkpoint directory, or preset")
    p.add_argument("--port", type=int, default=5555, help="control port; 0 picks a free one (default: %(default)s)")
    p.add_argument("--bind", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "auto"), default="float32",
                   help="default precision of the served sessions (a client's create may set its own; auto measures "
                        "this machine)")
    p.add_argument("--batch-window-ms", type=float, default=2.0,
                   help="dynamic batching: how long a step waits for other sessions' steps to share its forward "
                        "pass; 0 batches only steps already queued (default: %(default)s)")
    p.add_argument("--max-batch", type=positive_int, default=32,
                   help="most sessions in one batched pass (default: %(default)s)")
    p.add_argument("--max-sessions", type=positive_int, default=256,
                   help="open sessions of all clients together; a full server closes a session idle 60 s for a new "
                        "one, else answers 'busy' (default: %(default)s)")
    p.add_argument("--max-sessions-per-client", type=positive_int, default=8,
                   help="open sessions one client connection may hold (default: %(default)s)")
    p.add_argument("--idle-timeout", type=float, default=300.0, metavar="S",
                   help="close sessions unused this many seconds (default: %(default)s)")
    p.add_argument("--open-stream", action="store_true",
                   help="let any subscriber read every session's frames on the stream (default: a subscriber receives "
                        "only the sessions whose stream id it was given)")
    p.add_argument("--curve-keys", metavar="DIR",
                   help="encrypt with CURVE and admit only the clients whose public certificates are in DIR/clients "
                        "(*.key); the server's key pair is DIR/server.key(_secret), made on first use "
                        "(see bridges/PROTOCOL.md, 'Encryption')")
    p.set_defaults(handler=_serve)

    p = add("play", "walk through a model's imagined world in a browser: a local page (keys move, a timeline "
                    "replays exactly) and its WebSocket API")
    p.add_argument("--model", default="pushworld-64", help="bundled model name, checkpoint directory, or preset "
                   "(default: %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="HTTP and WebSocket port; 0 picks a free one "
                   "(default: %(default)s)")
    p.add_argument("--bind", default="127.0.0.1", help="interface to bind (default: loopback only)")
    p.add_argument("--no-browser", action="store_true", help="only print the address; do not open a browser")
    p.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                   help="also accept WebSocket connections from pages of this origin, e.g. a WebXR page served "
                        "elsewhere (repeatable; default: only this server's own page and non-browser clients)")
    p.set_defaults(handler=_play)

    for name, (module_name, help_text) in MODULE_COMMANDS.items():
        module = _module(module_name)
        if module is None:
            continue
        p = add(name, help_text)
        module.add_arguments(p)
        p.set_defaults(handler=module.run)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `worldsim` command; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help and usage errors: return the status instead of exiting
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    debug = bool(getattr(args, "debug", False))
    try:
        result: Any = args.handler(args)
        return int(result or 0)
    except SystemExit as exc:  # a handler's usage error (parser.error)
        return exc.code if isinstance(exc.code, int) else 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (WorldSimError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
