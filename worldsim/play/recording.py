"""The play page's own ops: the first frame of the model's world for a seed, and a session's recording as mp4 + JSONL
(the files `worldsim score` and `worldsim record --import-videos` read)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worldsim.bridges.protocol import BridgeError
from worldsim.errors import WorldSimError
from worldsim.session import Session
from worldsim.world_model import WorldModel

from .gateway import ExtraOp

NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
MAX_SEED = 2**31 - 1  # what a page's number input and every world's reset take


def _args(op: str, args: dict[str, Any], allowed: dict[str, type]) -> dict[str, Any]:
    for key, value in args.items():
        kind = allowed.get(key)
        if kind is None or isinstance(value, bool) or not isinstance(value, kind):
            raise BridgeError("bad_request", f"{op}: invalid args {json.dumps(args)[:120]}: {key!r} "
                              f"{'is not an argument' if kind is None else f'must be {kind.__name__}'}. Expected "
                              f"fields: {sorted(allowed)}.")
    return args


def world_frame_op(model: WorldModel) -> ExtraOp:
    """`world_frame` {seed}: the first frame of the world the model was trained on (its meta.json env_id), reset
    with `seed`, at the model's frame size: one uint8 (1, H, W, 3) buffer, ready for `reset`."""
    from worldsim.envs.world_model_env import model_world, world_frame

    env_id = model_world(model)

    def run(session: Session | None, args: dict[str, Any]) -> tuple[dict[str, Any], list[np.ndarray]]:
        seed = _args("world_frame", args, {"seed": int}).get("seed", 0)
        if not 0 <= seed <= MAX_SEED:
            raise BridgeError("bad_request", f"world_frame: seed {seed}; expected 0 … {MAX_SEED}.")
        frame = world_frame(model.config.height, model.config.width, seed, env_id)
        return {"seed": seed, "env_id": env_id}, [frame]

    return ExtraOp(run, needs_session=False)


def export_op(model: WorldModel) -> ExtraOp:
    """`export` {name}: the session's frames as `name`.mp4 (one uint8 buffer holding the file) and its actions as a
    JSONL line (`result.jsonl`), from the first frame whose following actions are all known (after a reset from
    several frames, those between them are not)."""
    fps = model.config.fps

    def run(session: Session | None, args: dict[str, Any]) -> tuple[dict[str, Any], list[np.ndarray]]:
        name = _args("export", args, {"name": str}).get("name", "worldsim-play")
        if not NAME.fullmatch(name):
            raise BridgeError("bad_request", f"export: name {name[:80]!r}; expected 1–64 letters, digits, '_', '.' "
                              "or '-' (the file names are NAME.mp4 and NAME.jsonl).")
        assert session is not None
        if not session.frames:
            raise BridgeError("session_state", "export: the session has no frames yet; reset it first.")
        frames, actions = session.history, [a[0] for a in session.actions]
        start = max((i + 1 for i, a in enumerate(actions) if a is None), default=0)
        frames, actions = frames[start:], actions[start:]
        row = {"video": f"{name}.mp4", "actions": [a if isinstance(a, str) else np.asarray(a).tolist()
                                                   for a in actions],
               "caption": f"worldsim play: {len(frames)} frames imagined by {model.config.name}"}
        return ({"video": row["video"], "jsonl_name": f"{name}.jsonl", "jsonl": json.dumps(row) + "\n",
                 "frames": len(frames), "fps": fps, "first_frame": start}, [mp4_bytes(frames, fps)])

    return ExtraOp(run)


def mp4_bytes(frames: np.ndarray, fps: float) -> np.ndarray:
    """frames uint8 (T, H, W, 3) → the bytes of an mp4 file (OpenCV's 'mp4v'), as uint8 (n,)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
        if not writer.isOpened():
            raise WorldSimError("OpenCV could not open an mp4 file for writing with the 'mp4v' codec; check that "
                                "opencv-python has video support.")
        try:
            for frame in frames:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        return np.frombuffer(path.read_bytes(), np.uint8)
