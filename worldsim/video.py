"""Reading videos (OpenCV) and their JSONL action files for `worldsim record --import-videos` and `worldsim score`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .errors import DatasetError


def read_video(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """All frames of a video (any file or image-sequence pattern OpenCV reads, e.g. "frames/%03d.png") as
    (T, H, W, 3) uint8 RGB, resized to size = (height, width) with area averaging when given."""
    if not Path(path).is_file() and "%" not in str(path):
        raise DatasetError(f"video {path} does not exist; pass a video file OpenCV can read (mp4, avi, …) or an "
                           "image-sequence pattern such as frames/%03d.png.")
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise DatasetError(f"could not read any frame from {path}; check that OpenCV can decode it.")
    return np.stack(frames) if size is None else resize_frames(np.stack(frames), size)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(T, h, w, 3) uint8 → (T, H, W, 3) with area averaging; size = (H, W); unchanged when already that size."""
    if frames.shape[1:3] == tuple(size):
        return frames
    return np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames])


def read_actions_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows {"video": name, "actions": [...], "caption": ...} of a JSONL action file, one video per line."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"actions file {path} does not exist; give a JSONL file with one "
                           f'{{"video": ..., "actions": [...], "caption": ...}} object per line.')
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}:{n}: not valid JSON ({e}).") from e
        if not isinstance(row, dict) or not isinstance(row.get("video"), str) or \
                not isinstance(row.get("actions"), list):
            raise DatasetError(f'{path}:{n}: expected {{"video": "name.mp4", "actions": [...], '
                               f'"caption": "..."}}, got {line[:80]!r}.')
        rows.append(row)
    return rows


def actions_of_rows(rows: list[dict[str, Any]], path: str | os.PathLike) -> list[list[Any]]:
    """Each row's actions, checked to be all phrases (str) or all numeric vectors of one length d (lists of
    numbers); DatasetError naming the video and step of the first action that breaks the rule."""
    kind: tuple[str, str, int] | None = None  # (kind, video, step) of the first action seen
    dim = 0
    for row in rows:
        for t, action in enumerate(row["actions"]):
            where = f"{path}: video {row['video']}, step {t}"
            if isinstance(action, str):
                this = "text"
            elif isinstance(action, list) and action and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in action):
                this = "vector"
                if kind is not None and kind[0] == "vector" and len(action) != dim:
                    raise DatasetError(f"{where}: a numeric action of {len(action)} values, but earlier ones have "
                                       f"{dim}; every vector action needs the same length.")
                dim = len(action)
            else:
                raise DatasetError(f"{where}: action {action!r} is neither a phrase nor a list of numbers; write "
                                   'phrases ("move left") or vectors ([0.1, -0.3]); a single number is [0.5].')
            if kind is None:
                kind = (this, row["video"], t)
            elif kind[0] != this:
                raise DatasetError(f"{where}: a {this} action, but video {kind[1]} step {kind[2]} holds a "
                                   f"{kind[0]} one; a dataset's actions are all phrases or all numeric vectors.")
    return [list(row["actions"]) for row in rows]
