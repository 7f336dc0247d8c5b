"""`worldsim score VIDEO`: per-frame and per-patch surprise of any video, with calibrated verdicts, JSON + PNG."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .actions import Action, ActionSpec
from .errors import InvalidAction
from .frames import check_action_count
from .plausibility import hottest_patch
from .video import read_actions_jsonl, read_video, resize_frames
from .world_model import ScoreReport, WorldModel

HOTTEST_FRAMES = 4  # frames shown with their heat maps in the PNG


def video_actions(actions_file: str | os.PathLike, video: str | os.PathLike, frames: int,
                  spec: ActionSpec) -> list[Action]:
    """The T-1 actions of `video` from a JSONL action file (the `record --import-videos` format): the row whose
    "video" is the video's file name, or the only row. Phrases (text model) or lists of numbers (vector model);
    unknown phrases, wrong kinds or shapes and wrong counts raise InvalidAction."""
    rows = read_actions_jsonl(actions_file)
    name = Path(video).name
    matching = [r for r in rows if r["video"] == name] or (rows if len(rows) == 1 else [])
    if not matching:
        raise InvalidAction(f"{actions_file} has {len(rows)} rows and none for video {name!r} (rows name "
                            f"{sorted(r['video'] for r in rows)[:5]}). Fix: add a row "
                            f'{{"video": "{name}", "actions": [...]}} or keep a single row in the file.')
    actions = matching[0]["actions"]
    check_action_count(actions, frames, what=f"actions for {name} in {actions_file}")
    return spec.check_many(actions, strict=True, what=f"actions for {name}")


def score_video(model: WorldModel, video: str | os.PathLike, out_dir: str | os.PathLike,
                actions_file: str | os.PathLike | None = None, progress: bool = True) -> dict[str, Any]:
    """Score every frame of `video` (resized to the model's frame size) and write report.json and report.png.

    Returns the report (also in report.json): per frame log_prob (nats), bits_per_dim, hottest patch (x, y px)
    and, for a calibrated model, percentile among real frames, z-score and the implausible flag.
    """
    start = time.perf_counter()
    cfg = model.config
    raw = read_video(video)
    frames = resize_frames(raw, (cfg.height, cfg.width))
    actions = None if actions_file is None else video_actions(actions_file, video, len(frames), cfg.action_spec)
    report = model.score(frames, actions=actions, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = _frame_rows(report, cfg.height, cfg.width)
    verdict = report.verdict
    result: dict[str, Any] = {
        "video": str(video), "frames": len(frames), "source_size": list(raw.shape[1:3]),
        "model_size": [cfg.height, cfg.width], "resized": raw.shape[1:3] != frames.shape[1:3],
        "model": cfg.name, "likelihood_space": report.space, "dims_per_frame": report.dims_per_frame,
        "conditioned_on_actions": actions is not None,
        "actions_file": None if actions_file is None else str(actions_file),
        "calibrated": verdict is not None, "surprise_unit": report.surprise_unit,
        "threshold_percentile": None if verdict is None else verdict.threshold_percentile,
        "deterministic": report.noise_draws == 0,
        "implausible_frames": [r["t"] for r in rows if r.get("implausible")],
        "most_surprising_frames": _hottest_frames(report),
        "per_frame": rows,
    }
    result["first_implausible_frame"] = (result["implausible_frames"] or [None])[0]
    result["png"] = str(_save_png(out / "report.png", frames, report, result))
    result["json"] = str(out / "report.json")
    result["wall_time_s"] = time.perf_counter() - start
    Path(result["json"]).write_text(json.dumps(result, indent=1))
    return result


def _frame_rows(report: ScoreReport, height: int, width: int) -> list[dict[str, Any]]:
    surprise = report.surprise
    assert surprise is not None  # WorldModel.score and the bridge client always fill it
    rows = []
    for t in range(len(report.log_prob)):
        x, y = hottest_patch(surprise[t], height, width)
        row = {"t": t, "log_prob": float(report.log_prob[t]), "bits_per_dim": float(report.bits_per_dim[t]),
               "hottest_patch_px": [round(x, 1), round(y, 1)],
               "hottest_patch_surprise": float(surprise[t].max())}
        if report.verdict is not None:
            v = report.verdict
            row.update(percentile=float(v.percentile[t]), z_score=float(v.z_score[t]),
                       threshold_bits_per_dim=float(v.threshold_bits_per_dim[t]), implausible=bool(v.implausible[t]))
        rows.append(row)
    return rows


def _hottest_frames(report: ScoreReport) -> list[int]:
    """Frames by decreasing surprise: z-score when calibrated (frame 0 on its own scale), else bits/dim of t ≥ 1."""
    key = report.verdict.z_score if report.verdict is not None else np.r_[-np.inf, report.bits_per_dim[1:]]
    order = np.argsort(-np.asarray(key), kind="stable")
    return [int(t) for t in order[:HOTTEST_FRAMES] if np.isfinite(key[t])]


def _save_png(path: Path, frames: np.ndarray, report: ScoreReport, result: dict[str, Any]) -> Path:
    """The per-frame surprise curve with the threshold above the most surprising frames with heat maps."""
    import cv2
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    hottest = result["most_surprising_frames"]
    surprise = report.surprise
    assert surprise is not None  # WorldModel.score and the bridge client always fill it
    fig = Figure(figsize=(2.2 * max(len(hottest), 2), 5.2), dpi=90, layout="constrained")
    grid = fig.add_gridspec(2, max(len(hottest), 1), height_ratios=[1.1, 1])
    ax = fig.add_subplot(grid[0, :])
    t = np.arange(len(report.bits_per_dim))
    ax.plot(t, report.bits_per_dim, marker=".", label="frame surprise")
    if report.verdict is not None:
        v = report.verdict
        ax.plot(t, v.threshold_bits_per_dim, "--", color="tab:red",
                label=f"threshold ({v.threshold_percentile:g}th percentile of real frames)")
        bad = np.flatnonzero(v.implausible)
        ax.scatter(bad, report.bits_per_dim[bad], color="tab:red", zorder=3, label="implausible")
    ax.set_xlabel("frame")
    ax.set_ylabel(f"{report.space} bits/dim")
    video = Path(result["video"])
    ax.set_title(f"{video.parent.name + '/' if '%' in video.name else ''}{video.name}: surprise per frame "
                 f"({'with' if result['conditioned_on_actions'] else 'without'} actions)", fontsize=9)
    ax.legend(fontsize=7)
    h, w = frames.shape[1:3]
    cmap = colormaps["inferno"]
    for col, k in enumerate(hottest):
        s = surprise[k]
        norm = (s - s.min()) / max(float(np.ptp(s)), 1e-9)
        heat = cv2.resize(cmap(norm)[..., :3].astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        overlay = (0.55 * frames[k] / 255.0 + 0.45 * heat).clip(0, 1)
        a = fig.add_subplot(grid[1, col])
        a.imshow(overlay, interpolation="nearest")
        a.set_xticks([])
        a.set_yticks([])
        row = result["per_frame"][k]
        label = f"t={k}" + (f", {row['percentile']:.1f} pct" if "percentile" in row else "")
        a.set_title(label + (" ✗" if row.get("implausible") else ""), fontsize=8)
        a.plot(*row["hottest_patch_px"], "c+", markersize=10)
    fig.savefig(path)
    return path


# ----- CLI hooks ------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file OpenCV can read (mp4, avi, …) or an image pattern (f/%%03d.png)")
    parser.add_argument("--actions", metavar="FILE.jsonl",
                        help='the video\'s actions: JSONL rows {"video": NAME, "actions": [...]} (T-1 phrases); '
                             "without it frames are scored without actions")
    parser.add_argument("--model", default="pushworld-64", help="bundled model name or checkpoint directory")
    parser.add_argument("--out", required=True, help="folder for report.json and report.png")


def run(args: argparse.Namespace) -> int:
    from .demo import load_model

    model, note = load_model(args.model)
    if note:
        print(note)
    r = score_video(model, args.video, args.out, args.actions)
    if r["resized"]:
        print(f"resized {r['source_size'][0]}×{r['source_size'][1]} frames to the model's "
              f"{r['model_size'][0]}×{r['model_size'][1]}")
    print(f"scored {r['frames']} frames of {args.video} ({r['likelihood_space']} bits/dim, "
          f"{'with' if r['conditioned_on_actions'] else 'without'} actions) in {r['wall_time_s']:.1f} s")
    if not r["calibrated"]:
        print("this model has no calibration: no verdicts, surprise in raw nats")
    elif r["implausible_frames"]:
        print(f"implausible frames (above the {r['threshold_percentile']:g}th percentile of real frames): "
              f"{r['implausible_frames']}")
    else:
        print(f"every frame is plausible (below the {r['threshold_percentile']:g}th percentile of real frames)")
    print(f"most surprising frames: {r['most_surprising_frames']}")
    print(f"wrote {r['json']} and {r['png']}")
    return 0

