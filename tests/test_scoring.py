"""`worldsim score VIDEO`: the report's format on real files, resizing, actions files and every error message."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import moving_squares

from worldsim import WorldModel
from worldsim.cli import main
from worldsim.errors import DatasetError, InvalidAction
from worldsim.plausibility import META_KEY, calibrate
from worldsim.scoring import score_video

FRAMES = 6


def write_video(folder: Path, frames: np.ndarray, scale: int = 2) -> str:
    """PNG frames (lossless) upscaled ×scale; returns the OpenCV image-sequence pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        big = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(folder / f"{t:03d}.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    return str(folder / "%03d.png")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("score")
    clips, actions = moving_squares(5, FRAMES, seed=3)
    model = WorldModel.from_config("tiny", seed=0)
    model.meta[META_KEY] = calibrate(model, list(clips[1:]), actions[1:], source="squares").to_meta()
    video = write_video(root / "clip", clips[0])
    (root / "actions.jsonl").write_text(json.dumps({"video": "%03d.png", "actions": actions[0]}) + "\n")
    (root / "short.jsonl").write_text(json.dumps({"video": "x.mp4", "actions": actions[0][:2]}) + "\n")
    (root / "odd.jsonl").write_text(json.dumps({"video": "x.mp4", "actions": ["jump"] * (FRAMES - 1)}) + "\n")
    (root / "two.jsonl").write_text("".join(json.dumps({"video": v, "actions": actions[0]}) + "\n" for v in "ab"))
    (root / "junk.mp4").write_bytes(b"not a video at all")
    return {"model": str(model.save(root / "model")), "video": video, "root": str(root),
            "uncalibrated": str(WorldModel.from_config("tiny", seed=0).save(root / "plain"))}


def test_the_report_has_every_frame_and_a_picture(files: dict[str, str], tmp_path: Path) -> None:
    model = WorldModel.from_pretrained(files["model"])
    r = score_video(model, files["video"], tmp_path, Path(files["root"]) / "actions.jsonl", progress=False)
    assert r["frames"] == FRAMES and r["source_size"] == [32, 32] and r["model_size"] == [16, 16] and r["resized"]
    assert r["likelihood_space"] == "pixels" and r["conditioned_on_actions"] and r["calibrated"]
    assert r["deterministic"] and r["surprise_unit"] == "z" and r["threshold_percentile"] == 99.0
    assert [row["t"] for row in r["per_frame"]] == list(range(FRAMES))
    row = r["per_frame"][3]
    assert set(row) >= {"log_prob", "bits_per_dim", "percentile", "z_score", "implausible", "hottest_patch_px"}
    assert 0 <= row["percentile"] <= 100 and 0 <= row["hottest_patch_px"][0] < 16
    assert r["implausible_frames"] == [row["t"] for row in r["per_frame"] if row["implausible"]]
    assert len(r["most_surprising_frames"]) == 4
    on_disk = json.loads(Path(r["json"]).read_text())
    assert on_disk["per_frame"] == r["per_frame"]
    assert cv2.imread(r["png"]) is not None
    again = score_video(model, files["video"], tmp_path / "again", Path(files["root"]) / "actions.jsonl",
                        progress=False)
    assert again["per_frame"] == r["per_frame"]  # deterministic


def test_the_cli_scores_without_actions_and_says_so(files: dict[str, str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", files["video"], "--model", files["uncalibrated"], "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "resized 32×32 frames to the model's 16×16" in out and "without actions" in out
    assert "no calibration" in out
    report = json.loads((tmp_path / "report.json").read_text())
    assert not report["calibrated"] and "percentile" not in report["per_frame"][1]


@pytest.mark.parametrize("video, actions, error, match", [
    ("missing.mp4", None, DatasetError, r"video .*missing.mp4 does not exist"),
    ("junk.mp4", None, DatasetError, r"could not read any frame from .*junk.mp4"),
    (None, "nothing.jsonl", DatasetError, r"actions file .*nothing.jsonl does not exist"),
    (None, "short.jsonl", InvalidAction, r"actions for %03d.png in .*short.jsonl.*received 2.*6 frames"),
    (None, "odd.jsonl", InvalidAction, r"unknown action 'jump'"),
    (None, "two.jsonl", InvalidAction, r"has 2 rows and none for video '%03d.png'.*Fix: add a row"),
])
def test_bad_inputs_are_named_errors(files: dict[str, str], tmp_path: Path, video, actions, error, match) -> None:
    root = Path(files["root"])
    model = WorldModel.from_pretrained(files["model"])
    with pytest.raises(error, match=match):
        score_video(model, files["video"] if video is None else root / video, tmp_path,
                    None if actions is None else root / actions, progress=False)
