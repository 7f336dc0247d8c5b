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
