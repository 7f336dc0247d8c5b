"""`worldsim play`: the page ships in the package; the page's ops (world frames, verdicts, mp4 + JSONL export); and
`worldsim play --no-browser` driven in a real headless Chromium with the bundled pushworld-64."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.client import connect

from worldsim import WorldModel
from worldsim.dataset import Dataset
from worldsim.envs.pushworld import detect_objects
from worldsim.envs.world_model_env import model_world, world_frame
from worldsim.play.envelope import decode_message, encode_message
from worldsim.play.server import pages, play_gateway
from worldsim.scoring import score_video
from worldsim.video import import_videos, read_video

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def pushworld() -> WorldModel:
    return WorldModel.load("pushworld-64")


class Client:
    def __init__(self, url: str) -> None:
        self.ws = connect(url, max_size=None).__enter__()  # what a `with` block does
        self.id = 0

    def ok(self, op: str, session: str | None = None, arrays=(), **args):
        self.id += 1
        self.ws.send(encode_message({"v": 1, "id": self.id, "op": op, "session": session, "args": args}, arrays))
        head, out = decode_message(self.ws.recv(timeout=TIMEOUT_S))
        assert head["ok"], head["error"]
        return head["result"], out

    def error(self, op: str, session: str | None = None, **args) -> dict:
        self.id += 1
        self.ws.send(encode_message({"v": 1, "id": self.id, "op": op, "session": session, "args": args}))
        head, _ = decode_message(self.ws.recv(timeout=TIMEOUT_S))
        assert not head["ok"]
        return head["error"]


@pytest.fixture(scope="module")
def client(pushworld):
    with play_gateway(pushworld, name="pushworld-64") as gw:
        c = Client(gw.ws_url)
        yield c
        c.ws.close()


def test_the_page_ships_in_the_package_with_nothing_from_elsewhere():
    files = pages()
    assert set(files) == {"/", "/app.js", "/style.css"}
    html = files["/"][1].decode()
    assert '<script src="/app.js">' in html and 'href="/style.css"' in html
    for _kind, body in files.values():
        assert body and not re.search(rb"https?://", body), "the page loads nothing from the network (no CDN)"


def test_world_frames_and_verdicts_as_score_gives_them(pushworld, client):
    (frame,) = client.ok("world_frame", seed=5)[1]
    np.testing.assert_array_equal(frame, world_frame(64, 64, 5, model_world(pushworld)))
    for bad in ({"seed": -1}, {"seed": "5"}, {"sed": 5}):
        assert client.error("world_frame", **bad)["code"] == "bad_request"
    token = client.ok("create", seed=1, timeline=True, judge=True)[0]["session"]
    result, (last,) = client.ok("reset", token, (frame,))
    clip, verdicts = [last], [result["verdict"]]
    actions = ["move left", "move left", "move up", "stay", "move down"]
    for a in actions:
        result, (last,) = client.ok("step", token, action=a)
        clip.append(last)
        verdicts.append(result["verdict"])
    report = pushworld.score(np.stack(clip), actions=actions)  # each frame as a real one, given the ones before
    for t, v in enumerate(verdicts):
        assert v["bits_per_dim"] == pytest.approx(report.bits_per_dim[t], abs=1e-4)
        assert v["percentile"] == pytest.approx(report.verdict.percentile[t], abs=0.5)
        assert v["implausible"] == bool(report.verdict.implausible[t])
    child = client.ok("fork", token, frames=3)[0]["session"]  # a branch's judge is the history's, as it was then
    result, (last,) = client.ok("step", child, action="move right")
    branch = pushworld.score(np.stack([*clip[:3], last]), actions=[*actions[:2], "move right"])
    assert result["verdict"]["bits_per_dim"] == pytest.approx(branch.bits_per_dim[-1], abs=1e-4)


def test_a_recording_reads_back_with_score_and_import_videos(pushworld, client, tmp_path):
    token = client.ok("create", seed=2)[0]["session"]
    assert client.error("export", token)["code"] == "session_state"
    client.ok("reset", token, client.ok("world_frame", seed=2)[1])
    actions = ["move right", "move right", "move down", "move left", "stay", "move up"]
    frames = [client.ok("step", token, action=a)[1][0] for a in actions]
    result, (mp4,) = client.ok("export", token, name="walk-1")
    assert (result["video"], result["jsonl_name"], result["frames"]) == ("walk-1.mp4", "walk-1.jsonl", 7)
    for bad in ("../x", "a b", "", "x" * 65):
        assert client.error("export", token, name=bad)["code"] == "bad_request"
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / result["video"]).write_bytes(mp4.tobytes())
    (tmp_path / result["jsonl_name"]).write_text(result["jsonl"])
    video = read_video(folder / result["video"])
    assert video.shape == (7, 64, 64, 3)
    assert np.abs(video[1:].astype(int) - np.stack(frames)).mean() < 8  # mp4 is lossy, not that lossy
    assert json.loads(result["jsonl"])["actions"] == actions
    data = Dataset(import_videos(folder, tmp_path / result["jsonl_name"], tmp_path / "data"))
    assert (len(data), data.episode_lengths, data.fps) == (1, [7], pushworld.config.fps)
    report = score_video(pushworld, folder / result["video"], tmp_path / "score",
                         actions_file=tmp_path / result["jsonl_name"], progress=False)
    assert report["frames"] == 7 and report["conditioned_on_actions"] and report["calibrated"]


# ----- the command, and the page in a real browser --------------------------------------------------------------------
@pytest.fixture(scope="module")
def served():
    """`worldsim play --no-browser --port 0` as a subprocess; yields its address."""
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen([sys.executable, "-m", "worldsim.cli", "play", "--no-browser", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        line = proc.stdout.readline()  # the first line names the address (blocks until the model is loaded)
        match = re.search(r"open (http://\S+/)", line)
        assert match, f"no address in the first line: {line!r} (exit code {proc.poll()})"
        yield match.group(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, proc.stdout.read()


def test_the_command_serves_the_page_and_the_gateway(served):
    with urllib.request.urlopen(served, timeout=TIMEOUT_S) as page:
        assert b"worldsim play" in page.read()
    with urllib.request.urlopen(served + "app.js", timeout=TIMEOUT_S) as script:
        assert script.headers["Content-Type"].startswith("text/javascript")
    with connect(served.replace("http", "ws") + "ws") as ws:
        ws.send('{"v": 1, "id": 1, "op": "hello"}')
        hello = json.loads(ws.recv(timeout=TIMEOUT_S))
    assert hello["ok"] and hello["result"]["served"] == "pushworld-64" and hello["result"]["websocket"]["calibrated"]


def _frames(page) -> list[np.ndarray]:
    data = page.evaluate("play.current.frames.map((f) => btoa(String.fromCharCode(...f)))")
    return [np.frombuffer(base64.b64decode(d), np.uint8).reshape(64, 64, 3) for d in data]


def _press(page, key: str) -> None:
    n = page.evaluate("play.steps")
    page.keyboard.press(key)
    page.wait_for_function(f"play.steps > {n} && !play.busy", timeout=TIMEOUT_S * 1000)


def _agent(frame: np.ndarray) -> np.ndarray:
    pos = detect_objects(frame)["agent_pos"]
    assert pos is not None, "the detector finds no agent"
    return np.array(pos)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium; CI installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_chromium_plays_the_page(served, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 1000}, accept_downloads=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(served)
    page.wait_for_function("window.play && play.ready", timeout=TIMEOUT_S * 1000)
    page.click("#view")
    start = _agent(_frames(page)[0])
    across = "ArrowLeft" if start[0] > 32 else "ArrowRight"  # towards the open side of the room
    sign = -1 if across == "ArrowLeft" else 1
    for _ in range(3):
        _press(page, across)
    for _ in range(3):
        _press(page, "s" if start[1] < 32 else "w")  # WASD too
    frames = _frames(page)
    moved = _agent(frames[3]) - start
    assert sign * moved[0] > 3 and abs(moved[1]) < 2, f"{across} moved the agent by {moved}"
    down = _agent(frames[6]) - _agent(frames[3])
    assert (1 if start[1] < 32 else -1) * down[1] > 3 and abs(down[0]) < 2, down

    # scrub back to frame 2 and press the key pressed there: a new branch, whose frame 3 is the old one's
    page.locator("#scrub").fill("2")
    assert page.evaluate("play.pos") == 2
    _press(page, across)
    assert page.evaluate("[play.branches.length, play.lastFork.frames, play.lastFork.exact]") == [2, 3, True]
    branch = _frames(page)
    np.testing.assert_array_equal(branch[3], frames[3])
    for _ in range(3):  # then the other way: the agent goes back
        _press(page, "ArrowRight" if across == "ArrowLeft" else "ArrowLeft")
    back = _agent(_frames(page)[6]) - _agent(branch[3])
    assert -sign * back[0] > 3, f"the other way moved the agent by {back}"

    # the first branch again: re-run it from frame 1, every frame comes back bit for bit
    page.locator("#branches li .name").first.click()
    assert page.evaluate("play.current.name") == "branch 1"
    page.locator("#scrub").fill("1")
    page.click("#rerun")
    page.wait_for_function("play.rerun !== undefined && !play.busy", timeout=TIMEOUT_S * 1000)
    assert page.evaluate("play.rerun") == {"same": 5, "total": 5}

    downloads = []
    page.on("download", lambda d: downloads.append(d))
    page.click("#download")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('saved')",
                           timeout=TIMEOUT_S * 1000)
    page.wait_for_timeout(500)
    names = sorted(d.suggested_filename for d in downloads)
    assert len(names) == 2 and names[0].endswith(".jsonl") and names[1].endswith(".mp4"), names
    for d in downloads:
        d.save_as(tmp_path / d.suggested_filename)
    row = json.loads((tmp_path / names[0]).read_text())
    assert row["video"] == names[1] and len(row["actions"]) == len(read_video(tmp_path / names[1])) - 1

    extra = int(os.environ.get("WORLDSIM_PLAY_PRESSES", "0"))  # more presses, to measure the latency
    for i in range(extra):
        _press(page, "ArrowLeft" if i % 2 else "ArrowRight")
    latency, model_ms = page.evaluate("[play.latencies, play.computeMs]")
    latency, model_ms = latency[-extra:], model_ms[-extra:]  # (all of them when extra is 0)
    page.locator("#scrub").fill("4")
    shot = tmp_path / "play.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("WORLDSIM_PLAY_SCREENSHOT"):  # e.g. docs/play.png (see docs/play.md)
        shutil.copy(shot, os.environ["WORLDSIM_PLAY_SCREENSHOT"])
    assert not errors and page.evaluate("play.errors") == [], errors
    page.close()
    print(f"\nkey press → frame on screen: median {np.median(latency):.0f} ms, p95 {np.percentile(latency, 95):.0f} ms "
          f"over {len(latency)} presses; model frame time median {np.median(model_ms):.0f} ms, p95 "
          f"{np.percentile(model_ms, 95):.0f} ms")


def test_chromium_maps_keys_and_the_mouse_to_vectors_and_starts_from_uploads(browser, tmp_path):
    from worldsim import preset

    spec = {"kind": "vector", "dim": 2, "low": [-1.0, 0.0], "high": [1.0, 4.0]}
    vec = WorldModel.from_config(preset("tiny").merged(action_spec=spec))
    with play_gateway(vec, name="vector") as gw:
        page = browser.new_page(viewport={"width": 1100, "height": 1000})
        page.goto(gw.url)
        page.wait_for_function("window.play && play.ready", timeout=TIMEOUT_S * 1000)
        keys = page.locator("#keys").inner_text()
        assert "component 0 → high (1)" in keys and "component 1 → low (0)" in keys and "drag" in keys
        assert page.locator("#vector output").all_inner_texts() == ["0.00", "0.00"]  # 0 where the box allows
        page.click("#view")  # (a click is a drag of no length: one step at the pointer)
        _press(page, "ArrowRight")
        _press(page, "w")
        box = page.locator("#view").bounding_box()
        n = page.evaluate("play.steps")
        page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.25)  # right of centre, up
        page.mouse.down()
        page.wait_for_function(f"play.steps > {n}", timeout=TIMEOUT_S * 1000)
        page.mouse.up()
        page.wait_for_function("!play.busy && play.queue.length === 0", timeout=TIMEOUT_S * 1000)
        actions = page.evaluate("play.current.actions")
        assert actions[2:4] == [[1.0, 0.0], [0.0, 4.0]]
        assert actions[4] == pytest.approx([0.5, 3.0], abs=0.02)
        _uploads(page, tmp_path)
        page.close()


def _uploads(page, folder: Path) -> None:
    """An image, then a video, as the first frames (resized to the model's 16×16 by the browser)."""
    import cv2

    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :24] = (255, 0, 0)  # RGB: left half red, right half blue
    image[:, 24:] = (0, 0, 255)
    cv2.imwrite(str(folder / "room.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    page.set_input_files("#upload", str(folder / "room.png"))
    page.wait_for_function("play.ready && play.current.origin === 'room.png'", timeout=TIMEOUT_S * 1000)
    first = np.array(page.evaluate("Array.from(play.current.frames[0])"), np.uint8).reshape(16, 16, 3)
    assert (first[:, :6] == (255, 0, 0)).all() and (first[:, -6:] == (0, 0, 255)).all()
    video = cv2.VideoWriter(str(folder / "walk.webm"), cv2.VideoWriter_fourcc(*"VP80"), 16, (32, 32))
    for i in range(20):
        video.write(np.full((32, 32, 3), 40 + 10 * i, np.uint8))
    video.release()
    page.set_input_files("#upload", str(folder / "walk.webm"))
    page.wait_for_function("play.ready && play.current.origin === 'walk.webm'", timeout=TIMEOUT_S * 1000)
    greys = page.evaluate("play.current.frames.map((f) => f[0])")
    assert len(greys) == 8 and greys == sorted(greys) and greys[-1] > greys[0] + 40, greys  # its first 8 frames
