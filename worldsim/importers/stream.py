"""Frames from video files read by index, decoded forward once (a LeRobot v3.0 mp4 holds many episodes one after
another: never held in memory whole), and images stored encoded in a table cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import cv2
import numpy as np

from ..errors import DatasetError
from ..video import resize_frames


def fourcc(cap: Any) -> str:
    """The codec's FourCC of an open cv2.VideoCapture, e.g. 'av01' or 'FMP4'."""
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    return "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00 ") or "unknown"


class VideoStream:
    """Frames of one video file by index, decoded forward once (reopened to go back); (H, W, 3) uint8 RGB."""

    def __init__(self, path: Path, codec: str | None):
        self.path, self.codec = path, codec
        self.cap = self._capture()
        self.next = 0  # index of the frame the next read returns
        self.last: np.ndarray | None = None  # the frame at index next-1, as returned

    def _capture(self) -> cv2.VideoCapture:
        if not self.path.is_file():
            raise DatasetError(f"video {self.path} is missing; the dataset is incomplete.")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise DatasetError(f"could not open the video {self.path} (info.json gives codec {self.codec!r}): OpenCV "
                               "cannot read the file; it is damaged or not a video.")
        return cap

    def frames(self, indices: np.ndarray, size: tuple[int, int] | None, where: str) -> np.ndarray:
        if len(indices) and indices.min() < 0:
            raise DatasetError(f"{where}: a frame timestamp falls before the start of {self.path} (frame index "
                               f"{int(indices.min())}); the data's timestamps are wrong.")
        out: list[np.ndarray] = []
        for k in indices.tolist():
            if k < self.next - 1 or (k == self.next - 1 and self.last is None):
                self.cap.release()
                self.cap, self.next, self.last = self._capture(), 0, None
            while self.next < k:
                if not self.cap.grab():
                    self._ended(k, where)
                self.next += 1
            if k == self.next:
                ok, bgr = self.cap.read()
                if not ok:
                    self._ended(k, where)
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                self.last = frame if size is None else resize_frames(frame[None], size)[0]
                self.next += 1
            assert self.last is not None
            out.append(self.last)
        return np.stack(out)

    def _ended(self, k: int, where: str) -> NoReturn:
        if self.next == 0:
            codec = fourcc(self.cap)
            names = {codec.lower(), str(self.codec).lower()}  # the file's FourCC, and info.json's codec name
            av1 = " (AV1)" if names & {"av01", "av1", "libsvtav1", "libaom-av1"} else ""
            raise DatasetError(f"could not decode any frame of {self.path}: its codec is {codec!r}{av1} (info.json: "
                               f"{self.codec!r}) and this OpenCV build cannot decode it, or the file is damaged. Fix: "
                               "re-encode the videos (ffmpeg -i IN.mp4 -c:v libx264 -pix_fmt yuv420p OUT.mp4), or "
                               "install an OpenCV whose FFmpeg has the decoder (opencv-python wheels decode AV1 with "
                               "dav1d).")
        raise DatasetError(f"{where}: the video {self.path} ends after {self.next} frames but the episode needs frame "
                           f"{k}; the video and the data's timestamps disagree.")

    def close(self) -> None:
        self.cap.release()


def decode_image(item: Any, root: Path, where: str) -> np.ndarray:
    """A LeRobot image cell ({"bytes": encoded, "path": ...}) → (H, W, 3) uint8 RGB."""
    data = item.get("bytes") if isinstance(item, dict) else None
    if data is None and isinstance(item, dict) and item.get("path"):
        path = root / item["path"]
        data = path.read_bytes() if path.is_file() else None
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if bgr is None:
        raise DatasetError(f"{where}: an image cell could not be decoded (found {str(item)[:80]!r}); expected "
                           "{'bytes': PNG/JPEG bytes} or a path to an image file.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
