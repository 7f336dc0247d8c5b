"""`worldsim record --import-lerobot`: LeRobot datasets in the v3.0 and v2.1 layouts → worldsim datasets.

The `lerobot` package does not install here in reasonable time (it pins its own torch and pulls CUDA wheels), so
these tests write the layouts themselves, as LeRobot's `datasets/utils.py` and its v2.1 → v3.0 conversion script
define them: parquet through pyarrow, mp4 through OpenCV (mp4v), and one AV1 clip kept below as bytes.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from worldsim.cli import main  # noqa: E402
from worldsim.dataset import Dataset, DatasetWriter  # noqa: E402
from worldsim.errors import DatasetError  # noqa: E402
from worldsim.importers import import_lerobot  # noqa: E402

FPS = 10
CAM = "observation.images.top"
H, W = 24, 32
LENGTHS = (5, 7, 4)
TASK = "push the T onto its target"
# six 16×16 AV1 frames at 10 fps (SVT-AV1): red = 40·t, a white 4×4 square moving right
AV1_MP4 = base64.b64decode(
    "AAAAIGZ0eXBpc29tAAACAGlzb21hdjAxaXNvMm1wNDEAAAAIZnJlZQAAAL5tZGF0CgoAAAABn/jV8gCAMhIUAChgBhggggAEdkZM"
    "/RK8MEAyKygEACSSST1pAFFCCBPgMADByJ0edgckqkx6mu1+39UYAuMLdxxN5gsqWYMyHCgCAQSSAB2MAHHDDCPgGAAvOEUsuHQ9"
    "tVtmGZAyFTADAAkk2ztAAAAEPgMAAC9xxU2yKBoBuDIVMAYADbYAO0AAAAR8AwAAL3HFR/eAGgGIMhUwCgIAAAA7GAAABHwAAA7I"
    "G2hq4sAAAAMnbW9vdgAAAGxtdmhkAAAAAAAAAAAAAAAAAAAD6AAAAlgAAQAAAQAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAAB"
    "AAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAgAAAlF0cmFrAAAAXHRraGQAAAADAAAAAAAAAAAA"
    "AAABAAAAAAAAAlgAAAAAAAAAAAAAAAAAAAAAAAEAAAAAAAAAAAAAAAAAAAABAAAAAAAAAAAAAAAAAABAAAAAABAAAAAQAAAAAAAk"
    "ZWR0cwAAABxlbHN0AAAAAAAAAAEAAAJYAAAAAAABAAAAAAHJbWRpYQAAACBtZGhkAAAAAAAAAAAAAAAAAAAoAAAAGABVxAAAAAAA"
    "LWhkbHIAAAAAAAAAAHZpZGUAAAAAAAAAAAAAAABWaWRlb0hhbmRsZXIAAAABdG1pbmYAAAAUdm1oZAAAAAEAAAAAAAAAAAAAACRk"
    "aW5mAAAAHGRyZWYAAAAAAAAAAQAAAAx1cmwgAAAAAQAAATRzdGJsAAAAknN0c2QAAAAAAAAAAQAAAIJhdjAxAAAAAAAAAAEAAAAA"
    "AAAAAAAAAAAAAAAAABAAEABIAAAASAAAAAAAAAABAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAGP//AAAAGGF2MUOB"
    "AAwACgoAAAABn/gF8ACAAAAAFGJ0cnQAAAAAAAAJegAACXoAAAAYc3R0cwAAAAAAAAABAAAABgAABAAAAAAUc3RzcwAAAAAAAAAB"
    "AAAAAQAAABJzZHRwAAAAACAYEBgQEAAAABxzdHNjAAAAAAAAAAEAAAABAAAABgAAAAEAAAAsc3RzegAAAAAAAAAAAAAABgAAACAA"
    "AABiAAAAAwAAABcAAAADAAAAFwAAABRzdGNvAAAAAAAAAAEAAAAwAAAAYnVkdGEAAABabWV0YQAAAAAAAAAhaGRscgAAAAAAAAAA"
    "bWRpcmFwcGwAAAAAAAAAAAAAAAAtaWxzdAAAACWpdG9vAAAAHWRhdGEAAAABAAAAAExhdmY2Mi4xMi4xMDI=")


# ----- writing the layouts ----------------------------------------------------------------------------------------
def level(e: int, t: int) -> int:
    """Red level of frame t of episode e: every frame of the dataset has its own."""
    return 20 + 12 * t + 50 * e


def frame(e: int, t: int) -> np.ndarray:
    f = np.empty((H, W, 3), np.uint8)
    f[..., 0], f[..., 1], f[..., 2] = level(e, t), 255 - level(e, t), 90
    return f


def actions_of(e: int, n: int) -> np.ndarray:
    t = np.arange(n)
    return np.stack([np.sin(t + e), 3 * np.cos(0.5 * t) + e], 1).astype(np.float32)


ALL = np.concatenate([actions_of(e, n) for e, n in enumerate(LENGTHS)])
STATS = {"min": (ALL.min(0) - 0.5).tolist(), "max": (ALL.max(0) + 0.5).tolist()}


def write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def features(cams: tuple[str, ...] = (CAM,), image: bool = False) -> dict:
    cam = {"dtype": "image" if image else "video", "shape": [H, W, 3], "names": ["height", "width", "channels"]}
    if not image:
        cam["info"] = {"video.fps": float(FPS), "video.height": H, "video.width": W, "video.codec": "mpeg4",
                       "video.pix_fmt": "yuv420p", "video.is_depth_map": False, "has_audio": False}
    return {**{c: dict(cam) for c in cams},
            "observation.state": {"dtype": "float32", "shape": [2], "names": {"motors": ["x", "y"]}},
            "action": {"dtype": "float32", "shape": [2], "names": {"motors": ["x", "y"]}},
            "episode_index": {"dtype": "int64", "shape": [1], "names": None},
            "frame_index": {"dtype": "int64", "shape": [1], "names": None},
            "timestamp": {"dtype": "float32", "shape": [1], "names": None},
            "next.reward": {"dtype": "float32", "shape": [1], "names": None},
            "next.done": {"dtype": "bool", "shape": [1], "names": None},
            "index": {"dtype": "int64", "shape": [1], "names": None},
            "task_index": {"dtype": "int64", "shape": [1], "names": None}}


def rows(episodes: list[int], start: int = 0, image_key: str | None = None) -> pa.Table:
    """The data rows of `episodes`, as LeRobot writes them (action as a fixed-size list of float32)."""
    cols: dict[str, list] = {k: [] for k in ("episode_index", "frame_index", "timestamp", "index", "task_index",
                                             "next.reward", "next.done")}
    acts, images = [], []
    for e in episodes:
        n = LENGTHS[e]
        acts.append(actions_of(e, n))
        for t in range(n):
            cols["episode_index"].append(e)
            cols["frame_index"].append(t)
            cols["timestamp"].append(np.float32(t / FPS))
            cols["index"].append(start + len(cols["index"]))
            cols["task_index"].append(0)
            cols["next.reward"].append(float(t == n - 1))
            cols["next.done"].append(t == n - 1)
            if image_key:
                images.append({"bytes": cv2.imencode(".png", cv2.cvtColor(frame(e, t), cv2.COLOR_RGB2BGR))[1].tobytes(),
                               "path": None})
    flat = np.concatenate(acts)
    table = {"action": pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), 2),
             "observation.state": pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), 2),
             "timestamp": pa.array(cols.pop("timestamp"), pa.float32()),
             "next.reward": pa.array(cols.pop("next.reward"), pa.float32()), **cols}
    if image_key:
        table[image_key] = pa.array(images, pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    return pa.table(table)


def write_v3(root: Path, cams: tuple[str, ...] = (CAM,), files: tuple[tuple[int, ...], ...] = ((0, 1), (2,)),
             image: bool = False) -> Path:
    """The v3.0 layout: episodes 0-1 share data/chunk-000/file-000.parquet and each camera's file-000.mp4, episode 2
    is alone in file-001."""
    episode_rows, start = [], 0
    for f, eps in enumerate(files):
        path = root / f"data/chunk-000/file-{f:03d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(rows(list(eps), start, cams[0] if image else None), path)
        offset = 0.0
        for e in eps:
            row = {"episode_index": e, "tasks": [TASK], "length": LENGTHS[e], "data/chunk_index": 0,
                   "data/file_index": f, "dataset_from_index": start, "dataset_to_index": start + LENGTHS[e],
                   "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0,
                   "stats/action/min": actions_of(e, LENGTHS[e]).min(0).tolist()}
            if not image:
                for c in cams:
                    row |= {f"videos/{c}/chunk_index": 0, f"videos/{c}/file_index": f,
                            f"videos/{c}/from_timestamp": offset, f"videos/{c}/to_timestamp": offset + LENGTHS[e] / FPS}
            episode_rows.append(row)
            offset += LENGTHS[e] / FPS
            start += LENGTHS[e]
        if not image:
            for c in cams:
                write_mp4(root / f"videos/{c}/chunk-000/file-{f:03d}.mp4",
                          [frame(e, t) for e in eps for t in range(LENGTHS[e])])
    (root / "meta/episodes/chunk-000").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(episode_rows), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(pa.table({"task_index": [0], "task": [TASK]}), root / "meta/tasks.parquet")
    info = {"codebase_version": "v3.0", "robot_type": "pusht-sim", "total_episodes": len(LENGTHS),
            "total_frames": sum(LENGTHS), "total_tasks": 1, "chunks_size": 1000, "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 200, "fps": FPS, "splits": {"train": f"0:{len(LENGTHS)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": None if image else "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features(cams, image)}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    (root / "meta/stats.json").write_text(json.dumps({"action": {**STATS, "mean": [0, 0], "std": [1, 1]}}))
    return root


def write_v21(root: Path, stats: bool = True) -> Path:
    """The v2.1 layout: one parquet and one mp4 per episode, meta/episodes.jsonl and meta/episodes_stats.jsonl."""
    start = 0
    (root / "meta").mkdir(parents=True)
    with open(root / "meta/episodes.jsonl", "w") as eps, open(root / "meta/episodes_stats.jsonl", "w") as st:
        for e, n in enumerate(LENGTHS):
            path = root / f"data/chunk-000/episode_{e:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(rows([e], start), path)
            write_mp4(root / f"videos/chunk-000/{CAM}/episode_{e:06d}.mp4", [frame(e, t) for t in range(n)])
            eps.write(json.dumps({"episode_index": e, "tasks": [TASK], "length": n}) + "\n")
            a = actions_of(e, n)
            st.write(json.dumps({"episode_index": e, "stats": {"action": {"min": a.min(0).tolist(),
                                                                           "max": a.max(0).tolist()}}}) + "\n")
            start += n
    if not stats:
        (root / "meta/episodes_stats.jsonl").unlink()
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": TASK}) + "\n")
    info = {"codebase_version": "v2.1", "robot_type": "pusht-sim", "total_episodes": len(LENGTHS),
            "total_frames": sum(LENGTHS), "total_tasks": 1, "total_videos": len(LENGTHS), "total_chunks": 1,
            "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(LENGTHS)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features()}
    (root / "meta/info.json").write_text(json.dumps(info, indent=4))
    return root


def rewrite(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    pq.write_table(change(pq.read_table(path)), path)


def check_round_trip(out: Path, lengths: tuple[int, ...] = LENGTHS, size: tuple[int, int] = (H, W)) -> Dataset:
    data = Dataset(out)
    assert len(data) == len(lengths) and data.episode_lengths == list(lengths)
    assert data.frame_size == size and data.fps == FPS and data.is_vector and data.action_spec.dim == 2
    for e, ep in enumerate(data):
        n = lengths[e]
        assert ep.frames.shape == (n, *size, 3)
        # frame t of episode e, not its neighbour: each frame has its own red level (mp4v keeps flat colours)
        red = ep.frames[..., 0].reshape(n, -1).mean(1)
        assert np.abs(red - [level(e, t) for t in range(n)]).max() < 6  # neighbours differ by 12
        np.testing.assert_array_equal(ep.actions, actions_of(e, n)[:-1])  # the last action has no next frame
        np.testing.assert_array_equal(ep.rewards, np.zeros(n - 1))
        assert not ep.terminated.any() and ep.caption == TASK
    return data


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


# ----- round trips ------------------------------------------------------------------------------------------------
def test_v3_layout_round_trip(tmp_path: Path) -> None:
    out = import_lerobot(write_v3(tmp_path / "lerobot"), tmp_path / "out")
    data = check_round_trip(out)
    assert data.action_spec.low == pytest.approx(STATS["min"]) and data.action_spec.high == pytest.approx(STATS["max"])
    source = data.manifest["source"]
    assert source["format"] == "lerobot" and source["codebase_version"] == "v3.0" and source["camera"] == CAM
    assert source["action_bounds"]["low_from"] == "meta/stats.json" and source["lerobot_episodes"] == [0, 1, 2]
    assert leftovers(tmp_path) == []


def test_v21_layout_round_trip(tmp_path: Path) -> None:
    out = import_lerobot(write_v21(tmp_path / "lerobot"), tmp_path / "out")
    data = check_round_trip(out)
    assert data.manifest["source"]["action_bounds"]["low_from"] == "meta/episodes_stats.jsonl"
    assert data.action_spec.low == pytest.approx(ALL.min(0)) and data.action_spec.high == pytest.approx(ALL.max(0))


def test_bounds_from_the_data_or_given(tmp_path: Path) -> None:
    root = write_v21(tmp_path / "lerobot", stats=False)
    data = Dataset(import_lerobot(root, tmp_path / "out"))
    kept = np.concatenate([actions_of(e, n)[:-1] for e, n in enumerate(LENGTHS)])
    assert data.action_spec.low == pytest.approx(kept.min(0)) and data.action_spec.high == pytest.approx(kept.max(0))
    assert data.manifest["source"]["action_bounds"]["low_from"] == "data"
    given = Dataset(import_lerobot(root, tmp_path / "given", action_low=-9, action_high=[9, 10]))
    assert given.action_spec.low == (-9, -9) and given.action_spec.high == (9, 10)
    assert given.manifest["source"]["action_bounds"]["high_from"] == "given"


def test_resize_and_first_episodes(tmp_path: Path) -> None:
    out = import_lerobot(write_v3(tmp_path / "lerobot"), tmp_path / "out", size=16, episodes=2)
    check_round_trip(out, LENGTHS[:2], (16, 16))


def test_camera_stored_as_images(tmp_path: Path) -> None:
    out = import_lerobot(write_v3(tmp_path / "lerobot", image=True), tmp_path / "out")
    check_round_trip(out)


def test_av1_video(tmp_path: Path) -> None:
    """AV1 (LeRobot's default codec) decodes where the platform's decoder has it, else the error names the codec."""
    root = write_v3(tmp_path / "lerobot", files=((0,),))  # episode 0 alone: its 5 frames, the clip has 6
    (root / f"videos/{CAM}/chunk-000/file-000.mp4").write_bytes(AV1_MP4)
    _info(root, lambda i: i["features"][CAM]["info"].update({"video.codec": "av1"}))
    try:
        out = import_lerobot(root, tmp_path / "out")
    except DatasetError as e:  # an OpenCV whose FFmpeg lacks an AV1 decoder
        assert "(AV1)" in str(e) and "info.json: 'av1'" in str(e)
        return
    ep = Dataset(out).episode(0)
    assert ep.frames.shape == (LENGTHS[0], 16, 16, 3)
    assert np.all(np.diff(ep.frames[..., 0].reshape(LENGTHS[0], -1).mean(1)) > 20)  # red rises 40 a frame


def test_undecodable_av1_names_the_codec(tmp_path: Path) -> None:
    root = write_v3(tmp_path / "lerobot", files=((0,),))
    video = root / f"videos/{CAM}/chunk-000/file-000.mp4"
    video.write_bytes(AV1_MP4)
    _zero_payload(video)  # the container opens and says AV1; no frame decodes
    with pytest.raises(DatasetError, match=r"could not decode any frame of .*file-000.mp4: its codec is 'AV01' "
                                           r"\(AV1\) .*Fix: re-encode the videos \(ffmpeg"):
        import_lerobot(root, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


# ----- the command line -------------------------------------------------------------------------------------------
def test_cli_import_lerobot(tmp_path: Path) -> None:
    root = write_v3(tmp_path / "lerobot", cams=(CAM, "observation.images.wrist"))
    proc = subprocess.run([sys.executable, "-m", "worldsim.cli", "record", "--import-lerobot", str(root), "--camera",
                           CAM, "--size", "16", "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "3 episodes, 16 frames of 16×16" in proc.stdout and "vector, d=2" in proc.stdout
    check_round_trip(tmp_path / "out", size=(16, 16))


@pytest.mark.parametrize("args", [["--env", "CartPole-v1", "--episodes", "1"], ["--import-videos", "v"],
                                  ["--import-minari", "m"]])
def test_cli_one_source(tmp_path: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--import-lerobot", str(tmp_path), *args, "--out", str(tmp_path / "o")]) == 2
    assert "give one of" in capsys.readouterr().err


def test_cli_camera_needs_lerobot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--env", "CartPole-v1", "--episodes", "1", "--camera", CAM, "--out", str(tmp_path)]) == 2
    assert "--camera" in capsys.readouterr().err


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--import-lerobot", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err.startswith("error: LeRobot dataset folder")


# ----- bad input: a named error saying what was found, nothing half-written ---------------------------------------
def _info(root: Path, change: Callable[[dict], None]) -> None:
    info = json.loads((root / "meta/info.json").read_text())
    change(info)
    (root / "meta/info.json").write_text(json.dumps(info))


def _zero_payload(path: Path) -> None:
    """Keep the mp4 container (it opens, its FourCC reads) but blank the coded frames between mdat and moov."""
    data = bytearray(path.read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov")
    data[start:end] = bytes(end - start)
    path.write_bytes(bytes(data))


EP_TABLE = "meta/episodes/chunk-000/file-000.parquet"
DATA0 = "data/chunk-000/file-000.parquet"
VIDEO1 = f"videos/{CAM}/chunk-000/file-001.mp4"
BROKEN: dict[str, tuple[Callable[[Path], None], str]] = {
    "no info.json": (lambda r: (r / "meta/info.json").unlink(), r"is not a LeRobot dataset: .*info.json is missing"),
    "old version": (lambda r: _info(r, lambda i: i.update(codebase_version="v1.6")), r"codebase_version 'v1.6'"),
    "no action feature": (lambda r: _info(r, lambda i: i["features"].pop("action")),
                          r"no 'action' feature \(features: \["),
    "two cameras": (lambda r: _info(r, lambda i: i["features"].update({"observation.images.wrist":
                                                                        i["features"][CAM]})),
                    r"has 2 cameras \['observation.images.top', 'observation.images.wrist'\]; choose one with "
                    r"--camera"),
    "episode table lacks a column": (
        lambda r: rewrite(r / EP_TABLE, lambda t: t.drop_columns([f"videos/{CAM}/from_timestamp"])),
        r"lacks the column\(s\) \['videos/observation.images.top/from_timestamp'\]"),
    "lengths disagree": (
        lambda r: rewrite(r / EP_TABLE, lambda t: t.set_column(t.column_names.index("length"), "length",
                                                               pa.array([6, 7, 4]))),
        r"episode 0\): 5 rows with frame_index \[0, 1, 2, 3, 4\]; the episode table gives length 6"),
    "data lacks action": (lambda r: rewrite(r / DATA0, lambda t: t.drop_columns(["action"])),
                          r"lacks the column\(s\) \['action'\]; found \["),
    "NaN action": (lambda r: rewrite(r / DATA0, lambda t: t.set_column(
        0, "action", pa.FixedSizeListArray.from_arrays(pa.array([np.nan] * 2 * t.num_rows, pa.float32()), 2))),
        r"the action of row 0 is \[nan, nan\]; expected finite values"),
    "action outside stats": (lambda r: (r / "meta/stats.json").write_text(json.dumps(
        {"action": {"min": STATS["min"], "max": [0.0, 0.0]}})),
        r"action component 1 reaches 3, outside the bounds \[-2.4\d*, 0\] \(low from meta/stats.json, high from "
        r"meta/stats.json\). Fix: pass --action-low/--action-high"),
    "data file missing": (lambda r: (r / DATA0).unlink(), r"data file .*file-000.parquet is missing"),
    "video missing": (lambda r: (r / VIDEO1).unlink(), r"video .*file-001.mp4 is missing"),
    "video unreadable": (lambda r: (r / VIDEO1).write_bytes(b"\x00" * 64 + b"not a video"),
                         r"could not open the video .*file-001.mp4 \(info.json gives codec 'mpeg4'\)"),
    "video undecodable": (lambda r: _zero_payload(r / VIDEO1),
                          r"could not decode any frame of .*file-001.mp4: its codec is 'FMP4'"),
    "video too short": (lambda r: write_mp4(r / VIDEO1, [frame(2, t) for t in range(3)]),
                        r"episode 2: the video .*file-001.mp4 ends after 3 frames but the episode needs frame 3"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_bad_input_named_error_and_nothing_left(tmp_path: Path, case: str) -> None:
    root = write_v3(tmp_path / "lerobot")
    damage, match = BROKEN[case]
    damage(root)
    with pytest.raises(DatasetError, match=match):
        import_lerobot(root, tmp_path / "out")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_unknown_camera(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"--camera 'observation.images.tpo' is not a camera .*\['observation.images"
                                           r".top'\]. Did you mean 'observation.images.top'\?"):
        import_lerobot(write_v3(tmp_path / "lerobot"), tmp_path / "out", camera="observation.images.tpo")


def test_failed_overwrite_keeps_the_old_dataset(tmp_path: Path) -> None:
    old = tmp_path / "out"
    with DatasetWriter(old, 8, 8, 4.0) as w:
        w.add_episode(np.zeros((2, 8, 8, 3), np.uint8), ["stay"], [0.0], [False])
    root = write_v3(tmp_path / "lerobot")
    with pytest.raises(DatasetError, match="already holds a dataset"):
        import_lerobot(root, old)
    BROKEN["video too short"][0](root)
    with pytest.raises(DatasetError, match="ends after"):
        import_lerobot(root, old, overwrite=True)
    assert Dataset(old).episode_lengths == [2] and leftovers(tmp_path) == []
    write_mp4(root / VIDEO1, [frame(2, t) for t in range(LENGTHS[2])])
    check_round_trip(import_lerobot(root, old, overwrite=True))
    assert leftovers(tmp_path) == []
