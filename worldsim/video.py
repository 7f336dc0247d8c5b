"""Videos: reading them (OpenCV) and their JSONL action files, and importing a folder of them as a dataset
(`worldsim record --import-videos`); `worldsim score` reads videos here too."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .actions import ActionSpec
from .dataset import DatasetWriter
from .errors import DatasetError

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


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


def action_bounds(values: float | Sequence[float] | None, dim: int, what: str) -> np.ndarray | None:
    """One value for every component, or one per component, as float64 (dim,); None stays None."""
    if values is None:
        return None
    arr = np.atleast_1d(np.asarray(values, np.float64))
    if arr.ndim != 1 or len(arr) not in (1, dim):
        raise DatasetError(f"{what} takes one value for all {dim} components or {dim} values; received "
                            f"{arr.tolist()}.")
    return np.broadcast_to(arr, (dim,)).copy()


def import_videos(video_dir: str | os.PathLike, actions_jsonl: str | os.PathLike, out_dir: str | os.PathLike,
                  size: int | None = None, fps: float | None = None, overwrite: bool = False,
                  action_low: float | Sequence[float] | None = None,
                  action_high: float | Sequence[float] | None = None) -> Path:
    """Import a folder of videos with a JSONL of per-video actions and captions as a dataset.

    Each JSONL line is `{"video": "name.mp4", "actions": ["move left", ...], "caption": "..."}` with
    frames-1 actions; optional "rewards" and "terminated" lists (default 0 and False). Actions are all phrases,
    or all numeric vectors of one length d (`[[0.1, -0.3], ...]`: a vector dataset bounded by `action_low` /
    `action_high`, else by the data's own min/max). Every video in the folder must have a line. Episodes follow
    the JSONL order.

    Args:
        video_dir: folder of videos (mp4, avi, mov, mkv, webm, m4v).
        actions_jsonl: the JSONL file.
        out_dir: dataset directory to write.
        size: resize frames to (size, size); required when videos differ in size.
        fps: frames per second to record (default: the first video's).
        overwrite: replace a dataset already in `out_dir`.
        action_low, action_high: bounds of numeric actions (one value, or one per component).

    Returns:
        The dataset directory.
    """
    video_dir, jsonl = Path(video_dir), Path(actions_jsonl)
    if not video_dir.is_dir():
        raise DatasetError(f"video folder {video_dir} does not exist.")
    rows = read_actions_jsonl(jsonl)
    videos = {p.name for p in video_dir.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS}
    listed = [row["video"] for row in rows]
    unknown = sorted(set(listed) - videos)
    if unknown:
        raise DatasetError(f"{jsonl} names video(s) {unknown} that are not in {video_dir} "
                           f"(found {sorted(videos)}).")
    unlisted = sorted(videos - set(listed))
    if unlisted:
        raise DatasetError(f"video(s) {unlisted} in {video_dir} have no line in {jsonl}; add their actions "
                           f"or move them out of the folder.")
    if not rows:
        raise DatasetError(f"{jsonl} lists no videos; nothing to import.")
    actions = actions_of_rows(rows, jsonl)
    source: dict[str, Any] = {"imported_from": str(video_dir), "actions_jsonl": str(jsonl)}
    spec = _imported_spec(actions, action_low, action_high, source, jsonl)
    writer: DatasetWriter | None = None
    for row, episode_actions in zip(rows, actions, strict=True):
        path = video_dir / row["video"]
        frames = read_video(path, None if size is None else (size, size))
        t = len(frames) - 1
        if len(episode_actions) != t:
            raise DatasetError(f"{path} has {len(frames)} frames, so it needs {t} actions in {jsonl}, "
                               f"but its line has {len(episode_actions)}.")
        if writer is None:
            cap = cv2.VideoCapture(str(path))
            video_fps = cap.get(cv2.CAP_PROP_FPS) or 16.0
            cap.release()
            writer = DatasetWriter(out_dir, frames.shape[1], frames.shape[2], fps or video_fps, (), source,
                                   overwrite, action_spec=spec)
        elif frames.shape[1:3] != (writer.height, writer.width):
            raise DatasetError(f"{path} is {frames.shape[2]}×{frames.shape[1]} but earlier videos are "
                               f"{writer.width}×{writer.height}; pass size=... to resize them all.")
        stored = np.asarray(episode_actions, np.float64).reshape(t, spec.dim) if spec is not None else episode_actions
        try:
            writer.add_episode(frames, stored, row.get("rewards", [0.0] * t), row.get("terminated", [False] * t),
                               str(row.get("caption", "")))
        except DatasetError as e:
            raise DatasetError(f"{path}: {e}") from None
    assert writer is not None
    logger.info("imported %d videos from %s", len(rows), video_dir)
    return writer.close()


def _imported_spec(actions: list[list[Any]], low: Any, high: Any, source: dict[str, Any],
                   jsonl: Path) -> ActionSpec | None:
    """The vector spec of numeric JSONL actions (None for phrases); records where its bounds came from in
    `source`."""
    vectors = [np.asarray(a, np.float64) for a in actions if a and not isinstance(a[0], str)]
    if not vectors:
        if low is not None or high is not None:
            raise DatasetError(f"--action-low/--action-high bound numeric actions; {jsonl} has text actions.")
        return None
    data = np.concatenate(vectors)
    d = data.shape[1]
    lo, hi = action_bounds(low, d, "action_low"), action_bounds(high, d, "action_high")
    if lo is None or hi is None:
        dlo, dhi = data.min(axis=0), data.max(axis=0)
        flat = dlo == dhi  # a constant component still needs low < high
        dlo, dhi = np.where(flat, dlo - 1.0, dlo), np.where(flat, dhi + 1.0, dhi)
        lo = dlo if lo is None else lo
        hi = dhi if hi is None else hi
        logger.info("numeric actions in %s: no --action-low/--action-high given, so the bounds are the data's "
                    "min/max: low %s, high %s", jsonl, lo.tolist(), hi.tolist())
        source["action_bounds"] = {"from": "data" if low is None and high is None else "given and data",
                                   "low": lo.tolist(), "high": hi.tolist()}
    else:
        source["action_bounds"] = {"from": "given", "low": lo.tolist(), "high": hi.tolist()}
    if not (lo < hi).all():
        raise DatasetError(f"action bounds need low < high in every component; received low {lo.tolist()}, "
                           f"high {hi.tolist()}.")
    return ActionSpec.vector(lo.tolist(), hi.tolist())
