"""Import a LeRobot dataset on disk (codebase v3.0, or v2.0/v2.1) as a worldsim dataset: one camera's frames, the
`action` feature as vector actions, episodes kept (`worldsim record --import-lerobot`; docs/importing-datasets.md)."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..dataset import DatasetWriter
from ..errors import DatasetError, WorldSimError, suggest
from ..video import action_bounds, resize_frames
from .common import bounded_spec, staged_output
from .stream import VideoStream, decode_image

logger = logging.getLogger(__name__)

# LeRobot's default paths (its datasets/utils.py); meta/info.json's data_path and video_path take precedence.
# v3.0: many episodes per parquet and per mp4 (meta/episodes/*/*.parquet says which file and from which second);
# v2.x: one parquet and one mp4 per episode (meta/episodes.jsonl), in chunk episode_index // chunks_size.
V3_DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V3_VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
V2_DATA_PATH = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V2_VIDEO_PATH = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
REWARD, DONE = "next.reward", "next.done"  # optional per-frame columns: reward and end after that frame's action


@dataclass
class _Episode:
    """Where one LeRobot episode lives: `video_from` is its start (s) within `video` (0 in v2's own files)."""

    index: int
    data: Path
    video: Path | None
    video_from: float
    length: int | None
    caption: str


@dataclass
class _Steps:
    """One episode's rows in frame order: actions (n, d) float64, timestamps (n,) s, rewards (n,), dones (n,)."""

    actions: np.ndarray
    timestamps: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    images: list[Any] | None  # a camera stored as images: the encoded image of each frame


def _pyarrow() -> Any:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise WorldSimError("importing a LeRobot dataset needs pyarrow; install it with "
                            "pip install 'worldsim-sdk[lerobot]' (or pip install pyarrow).") from None
    return pq


def _read_info(root: Path) -> dict[str, Any]:
    if not root.is_dir():
        raise DatasetError(f"LeRobot dataset folder {root} does not exist.")
    file = root / "meta" / "info.json"
    if not file.is_file():
        found = sorted(p.name for p in root.iterdir())[:10]
        raise DatasetError(f"{root} is not a LeRobot dataset: {file} is missing (the folder holds {found}); pass "
                           "the folder that holds meta/, data/ and videos/.")
    try:
        info = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"could not parse {file}: {e}.") from None
    missing = [k for k in ("codebase_version", "fps", "features") if not isinstance(info, dict) or k not in info]
    if missing:
        raise DatasetError(f"{file} lacks {missing}; a LeRobot info.json names codebase_version, fps and features.")
    return info


def _action_dim(features: dict[str, Any], file: Path) -> int:
    if "action" not in features:
        raise DatasetError(f"{file} has no 'action' feature (features: {sorted(features)}); worldsim imports "
                           "LeRobot's `action` as its vector actions.")
    shape = features["action"].get("shape")
    if not (isinstance(shape, list) and len(shape) == 1 and isinstance(shape[0], int) and shape[0] >= 1):
        raise DatasetError(f"{file}: the 'action' feature has shape {shape}; expected [d], one vector per frame.")
    return shape[0]


def _camera(features: dict[str, Any], camera: str | None, file: Path) -> str:
    cams = [k for k, f in features.items() if isinstance(f, dict) and f.get("dtype") in ("video", "image")]
    if camera is not None:
        if camera not in cams:
            raise DatasetError(f"--camera {camera!r} is not a camera of {file.parents[1]}: its video and image keys "
                               f"are {cams}.{suggest(camera, cams)}")
        return camera
    if not cams:
        raise DatasetError(f"{file} has no video or image feature (features: {sorted(features)}); worldsim "
                           "imports the frames of one camera.")
    videos = [k for k in cams if features[k]["dtype"] == "video"]
    preferred = [k for k in videos if k.startswith("observation.images.")] or videos or cams
    if len(preferred) > 1:
        raise DatasetError(f"{file.parents[1]} has {len(preferred)} cameras {preferred}; choose one with "
                           "--camera KEY (camera=...).")
    return preferred[0]


def _path(template: str, root: Path, what: str, **keys: Any) -> Path:
    try:
        return root / template.format(**keys)
    except (KeyError, IndexError, ValueError) as e:
        raise DatasetError(f"meta/info.json: the {what} template {template!r} could not be filled ({e}); "
                           f"expected fields among {sorted(keys)}.") from None


def _episodes_v3(pq: Any, root: Path, info: dict[str, Any], camera: str, is_video: bool) -> list[_Episode]:
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if not files:
        raise DatasetError(f"{root}: a v3.0 dataset keeps its episode table in meta/episodes/chunk-*/file-*.parquet; "
                           "none was found.")
    video_cols = [f"videos/{camera}/{k}" for k in ("chunk_index", "file_index", "from_timestamp")] if is_video else []
    need = ["episode_index", "data/chunk_index", "data/file_index", *video_cols]
    rows: list[dict[str, Any]] = []
    for file in files:
        names = _schema(pq, file)
        missing = [c for c in need if c not in names]
        if missing:
            raise DatasetError(f"{file} lacks the column(s) {missing}; a v3.0 episode table has {need} "
                               f"(found {sorted(n for n in names if not n.startswith('stats/'))}).")
        cols = need + [c for c in ("length", "tasks") if c in names]
        rows += _read(pq, file, cols).to_pylist()
    data_t, video_t = info.get("data_path") or V3_DATA_PATH, info.get("video_path") or V3_VIDEO_PATH
    out = []
    for r in sorted(rows, key=lambda r: r["episode_index"]):
        data = _path(data_t, root, "data_path", chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
        video = _path(video_t, root, "video_path", video_key=camera, chunk_index=r[video_cols[0]],
                      file_index=r[video_cols[1]]) if is_video else None
        out.append(_Episode(int(r["episode_index"]), data, video, float(r[video_cols[2]]) if is_video else 0.0,
                            r.get("length"), "; ".join(r.get("tasks") or [])))
    return out


def _episodes_v2(root: Path, info: dict[str, Any], camera: str, is_video: bool) -> list[_Episode]:
    file = root / "meta" / "episodes.jsonl"
    if not file.is_file():
        raise DatasetError(f"{root}: a {info['codebase_version']} dataset lists its episodes in {file}, which is "
                           "missing.")
    chunks = int(info.get("chunks_size") or 1000)
    data_t, video_t = info.get("data_path") or V2_DATA_PATH, info.get("video_path") or V2_VIDEO_PATH
    out = []
    for n, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ep = int(row["episode_index"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise DatasetError(f"{file}:{n}: expected {{\"episode_index\": ..., \"tasks\": [...], \"length\": ...}}, "
                               f"got {line[:80]!r}.") from None
        keys = {"episode_chunk": ep // chunks, "episode_index": ep}
        data = _path(data_t, root, "data_path", **keys)
        video = _path(video_t, root, "video_path", video_key=camera, **keys) if is_video else None
        out.append(_Episode(ep, data, video, 0.0, row.get("length"), "; ".join(row.get("tasks") or [])))
    return sorted(out, key=lambda e: e.index)


def _schema(pq: Any, file: Path) -> list[str]:
    try:
        return list(pq.read_schema(file).names)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise DatasetError(f"could not read the parquet file {file}: {e}.") from None


def _read(pq: Any, file: Path, columns: list[str]) -> Any:
    try:
        return pq.read_table(file, columns=columns)
    except (OSError, ValueError) as e:
        raise DatasetError(f"could not read the parquet file {file}: {e}.") from None


def _vectors(column: Any, d: int, where: str) -> np.ndarray:
    """An arrow column of d-vectors (list, large list or fixed-size list; a scalar column when d = 1) → (n, d)."""
    import pyarrow as pa

    arr = column.combine_chunks()
    n = len(arr)
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type):
        flat = arr.flatten().to_numpy(zero_copy_only=False)
    elif d == 1 and (pa.types.is_floating(arr.type) or pa.types.is_integer(arr.type)):
        flat = arr.to_numpy(zero_copy_only=False)
    else:
        raise DatasetError(f"{where}: the 'action' column has type {arr.type}; expected lists of {d} numbers.")
    if arr.null_count or len(flat) != n * d:
        raise DatasetError(f"{where}: the 'action' column holds {len(flat)} values for {n} rows ({arr.null_count} "
                           f"empty); info.json gives every action {d} values.")
    values = np.asarray(flat, np.float64).reshape(n, d)
    if not np.isfinite(values).all():
        row = int(np.argmax(~np.isfinite(values).all(axis=1)))
        raise DatasetError(f"{where}: the action of row {row} is {values[row].tolist()}; expected finite values.")
    return values


class _Tables:
    """Per-episode rows of the data files, each file read once (v3 files hold many episodes, in order)."""

    def __init__(self, pq: Any, dim: int, image_key: str | None):
        self.pq, self.dim, self.image_key = pq, dim, image_key
        self.file: Path | None = None
        self.cols: dict[str, Any] = {}

    def steps(self, ep: _Episode) -> _Steps:
        if ep.data != self.file:
            self._load(ep.data)
        where = f"{ep.data} (episode {ep.index})"
        rows = np.flatnonzero(self.cols["episode_index"] == ep.index)
        if len(rows) == 0:
            raise DatasetError(f"{where}: no row has episode_index {ep.index}; the episode table and the data "
                               "disagree.")
        order = rows[np.argsort(self.cols["frame_index"][rows], kind="stable")]
        frames = self.cols["frame_index"][order]
        if not np.array_equal(frames, np.arange(len(order))) or (ep.length is not None and ep.length != len(order)):
            raise DatasetError(f"{where}: {len(order)} rows with frame_index {_span(frames)}; the episode table "
                               f"gives length {ep.length}. Expected frame_index 0..length-1, once each.")
        n = len(order)
        rewards = self.cols[REWARD][order] if REWARD in self.cols else np.zeros(n)
        dones = self.cols[DONE][order] if DONE in self.cols else np.zeros(n, bool)
        images = [self.cols["images"][i] for i in order] if self.image_key else None
        return _Steps(self.cols["action"][order], self.cols["timestamp"][order], rewards, dones, images)

    def _load(self, file: Path) -> None:
        if not file.is_file():
            raise DatasetError(f"data file {file} is missing; the dataset is incomplete.")
        names = _schema(self.pq, file)
        need = ["episode_index", "frame_index", "timestamp", "action", *([self.image_key] if self.image_key else [])]
        missing = [c for c in need if c not in names]
        if missing:
            raise DatasetError(f"{file} lacks the column(s) {missing}; found {names}.")
        table = _read(self.pq, file, need + [c for c in (REWARD, DONE) if c in names])
        col = {name: table.column(name) for name in table.column_names}
        self.cols = {"episode_index": np.asarray(col["episode_index"].to_numpy(), np.int64),
                     "frame_index": np.asarray(col["frame_index"].to_numpy(), np.int64),
                     "timestamp": np.asarray(col["timestamp"].to_numpy(), np.float64),
                     "action": _vectors(col["action"], self.dim, str(file))}
        if REWARD in col:
            self.cols[REWARD] = np.nan_to_num(np.asarray(col[REWARD].to_numpy(zero_copy_only=False), np.float64))
        if DONE in col:
            self.cols[DONE] = np.asarray(col[DONE].to_numpy(zero_copy_only=False), bool)
        if self.image_key:
            self.cols["images"] = col[self.image_key].to_pylist()
        self.file = file


def _span(values: np.ndarray) -> str:
    return f"{values[:3].tolist()}…{values[-2:].tolist()}" if len(values) > 5 else str(values.tolist())


def _stats_bounds(root: Path, d: int) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The action's min/max from meta/stats.json, else (v2.1) over meta/episodes_stats.jsonl; (None, None) when
    neither has them."""
    file = root / "meta" / "stats.json"
    found: list[tuple[Any, Any]] = []
    try:
        if file.is_file():
            action = json.loads(file.read_text()).get("action") or {}
            found = [(action.get("min"), action.get("max"))]
        elif (file := root / "meta" / "episodes_stats.jsonl").is_file():
            rows = [json.loads(line) for line in file.read_text().splitlines() if line.strip()]
            found = [((r.get("stats") or {}).get("action", {}).get("min"),
                      (r.get("stats") or {}).get("action", {}).get("max")) for r in rows]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        raise DatasetError(f"could not read the action statistics in {file}: {e}.") from None
    if not found or any(lo is None or hi is None for lo, hi in found):
        return None, None, ""
    try:
        lo = np.min([np.asarray(v[0], np.float64).reshape(d) for v in found], axis=0)
        hi = np.max([np.asarray(v[1], np.float64).reshape(d) for v in found], axis=0)
    except ValueError:
        raise DatasetError(f"{file}: the action's min/max do not have {d} values each (found {found[0]}).") from None
    return lo, hi, f"meta/{file.name}"


def import_lerobot(root: str | os.PathLike, out_dir: str | os.PathLike, camera: str | None = None,
                   size: int | None = None, episodes: int | None = None, overwrite: bool = False,
                   action_low: float | Sequence[float] | None = None,
                   action_high: float | Sequence[float] | None = None, progress: bool = True) -> Path:
    """Import a LeRobot dataset folder (v3.0 or v2.x) as a worldsim dataset.

    Args:
        root: the LeRobot dataset folder (meta/, data/, videos/).
        out_dir: dataset folder to write (staged beside it and renamed when complete).
        camera: the video (or image) feature whose frames to keep; default the only `observation.images.*` video
            key (else the only camera).
        size: resize frames to (size, size) with area averaging; None keeps the camera's size.
        episodes: import only the first N episodes (by episode_index).
        overwrite: replace a dataset already in `out_dir`.
        action_low, action_high: bounds of the vector actions (one value or one per component); default
            meta/stats.json's min/max, else the data's.
        progress: show a tqdm bar (only when stderr is a terminal).

    Returns:
        The dataset folder: episode i holds LeRobot episode i's frames (n, H, W, 3) and its first n-1 actions.
    """
    pq = _pyarrow()
    root = Path(root)
    info = _read_info(root)
    info_file = root / "meta" / "info.json"
    version = str(info["codebase_version"])
    features = info["features"]
    if not (version.startswith("v3.") or version in ("v2.0", "v2.1")):
        raise DatasetError(f"{info_file} has codebase_version {version!r}; worldsim imports v3.0 and v2.0/v2.1 "
                           "LeRobot datasets (convert older ones with LeRobot's own scripts).")
    d = _action_dim(features, info_file)
    key = _camera(features, camera, info_file)
    is_video = features[key]["dtype"] == "video"
    video_info = features[key].get("info") or features[key].get("video_info") or {}
    table = _episodes_v3(pq, root, info, key, is_video) if version.startswith("v3.") else \
        _episodes_v2(root, info, key, is_video)
    table = table if episodes is None else table[:episodes]
    if not table:
        raise DatasetError(f"{root} lists no episode; nothing to import.")
    steps = list(map(_Tables(pq, d, None).steps, table))  # every episode's numbers, for the bounds first
    images = None if is_video else _Tables(pq, d, key)  # encoded images: read again, one data file at a time

    source: dict[str, Any] = {"imported_from": str(root.resolve()), "format": "lerobot", "codebase_version": version,
                              "robot_type": info.get("robot_type"), "camera": key,
                              "action_names": features["action"].get("names"),
                              "lerobot_episodes": [ep.index for ep in table],
                              "dropped": "each episode's last action: no frame follows it"}
    if size is not None:
        source["size"] = size
    lo, hi = action_bounds(action_low, d, "action_low"), action_bounds(action_high, d, "action_high")
    slo, shi, stats_from = _stats_bounds(root, d)
    low_from = "given" if lo is not None else stats_from
    high_from = "given" if hi is not None else stats_from
    lo, hi = (lo if lo is not None else slo), (hi if hi is not None else shi)
    transitions = [s.actions[:-1] for s in steps if len(s.actions) > 1]
    data = np.concatenate(transitions) if transitions else np.zeros((0, d))
    if len(data) == 0:
        raise DatasetError(f"{root}: every episode has a single frame, so no transition to import.")
    spec = bounded_spec(data, lo, hi, low_from, high_from, source, str(root))

    fps = float(info["fps"])
    video_fps = float(video_info.get("video.fps") or fps)
    side = None if size is None else (size, size)
    streams: dict[Path, VideoStream] = {}
    bar = tqdm(total=len(table), desc="import", unit="ep", disable=not (progress and sys.stderr.isatty()))
    try:
        with staged_output(out_dir, overwrite) as tmp:
            writer: DatasetWriter | None = None
            for ep, s in zip(table, steps, strict=True):
                where = f"{root}: episode {ep.index}"
                if ep.video is not None:
                    if ep.video not in streams:
                        for old in streams.values():  # v3 episodes come file by file: one decoder open at a time
                            old.close()
                        streams = {ep.video: VideoStream(ep.video, video_info.get("video.codec"))}
                    idx = np.rint((ep.video_from + s.timestamps) * video_fps).astype(np.int64)
                    frames = streams[ep.video].frames(idx, side, where)
                else:
                    assert images is not None
                    cells = images.steps(ep).images or []
                    decoded = np.stack([decode_image(item, root, where) for item in cells])
                    frames = decoded if side is None else resize_frames(decoded, side)
                if writer is None:
                    writer = DatasetWriter(tmp, frames.shape[1], frames.shape[2], fps, (), source, action_spec=spec)
                try:  # frame t, action t → frame t+1: the last action (no frame after it) is dropped
                    writer.add_episode(frames, s.actions[:-1].astype(np.float32), s.rewards[:-1], s.dones[:-1],
                                       ep.caption)
                except DatasetError as e:
                    raise DatasetError(f"{where}: {e}") from None
                bar.update(1)
            assert writer is not None
            writer.close()
    finally:
        bar.close()
        for stream in streams.values():
            stream.close()
    logger.info("imported %d LeRobot episodes (camera %s) from %s", len(table), key, root)
    return Path(out_dir)
