"""`worldsim demo`: imagine a world (PushWorld by default) beside the real one; write an mp4, a filmstrip, a summary."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from . import worlds
from .config import PRESETS
from .errors import WorldSimError
from .world_model import WorldModel, bundled_models

DEFAULT_MODEL = "pushworld-64"
DEFAULT_WORLD = "pushworld"  # for models whose meta.json names no env
VIDEO_FPS = 16
VIDEO_SCALE = 4
FILMSTRIP_COLUMNS = 8


def load_model(name_or_path: str | os.PathLike, seed: int = 0, dtype: str = "float32"
               ) -> tuple[WorldModel, str | None]:
    """`WorldModel.load` (a checkpoint directory, a bundled name, or a preset name: untrained) for the CLI.

    Returns (model, note); the note says plainly when the model is untrained, else None.
    Any other name raises CheckpointError (with a suggestion for a misspelt name).
    """
    wm = WorldModel.load(name_or_path, seed=seed, dtype=dtype)
    if wm.meta.get("trained", True) is not False:
        return wm, None
    name = str(name_or_path)
    if name in PRESETS and not Path(name).exists() and name not in bundled_models():
        return wm, (f"NOTE: {name!r} is a preset, not a trained checkpoint: a freshly initialised (untrained) model — "
                    "its frames are noise-like by design.")
    return wm, f"NOTE: checkpoint {name!r} is marked untrained in its meta.json; its frames are noise-like."


def demo_world(wm: WorldModel) -> worlds.World:
    """The world a model's demo plays: the one its meta.json `env_id` names, else PushWorld; it must offer a demo
    script (`extras["demo_script"]`, the phrases the demo cycles)."""
    env_id = wm.meta.get("env_id") or DEFAULT_WORLD
    world = worlds.get(str(env_id))
    if not world.extras.get("demo_script"):
        raise WorldSimError(f"the world {world.name!r} (env {world.env_id}) has no demo script, so `worldsim demo` "
                            "cannot drive it. Fix: register it with extras={'demo_script': (phrase, ...)}.")
    return world


def scripted_actions(steps: int, world: worlds.World | None = None) -> list[Any]:
    """The demo's action sequence: the world's demo script (default PushWorld's: one lap of the room, then a
    pause) cycled or truncated to `steps` actions."""
    script = (world or worlds.get(DEFAULT_WORLD)).extras["demo_script"]
    return [script[i % len(script)] for i in range(steps)]


def _world_frames(world: worlds.World, size: tuple[int, int], actions: list[Any], seed: int) -> np.ndarray:
    """The real world under `actions`: uint8 (T+1, H, W, 3) at the model's frame size.

    The world draws at the model's size where it can; where it cannot (PushWorld needs ≥ 32 px, test models are
    16 px) it draws at its own size, resized with area averaging.
    """
    h, w = size
    make = world.make_env or (lambda **kw: _gym_make(world.env_id))
    try:
        env = make(size=h, action_mode="text") if h == w else make(action_mode="text")
    except (ValueError, WorldSimError):
        env = make(action_mode="text")
    try:
        env.reset(seed=seed)
        frames = [env.render()]
        for a in actions:
            env.step(a)
            frames.append(env.render())
    finally:
        env.close()
    frames = [f if f.shape[:2] == (h, w) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
    return np.stack(frames)


def _gym_make(env_id: str) -> Any:
    import gymnasium as gym  # here: loading a model for the CLI needs no gymnasium

    return gym.make(env_id, render_mode="rgb_array")


def _observed_bits(wm: WorldModel, real: np.ndarray, actions: list[str], seed: int) -> np.ndarray:
    """Bits/dim of real frames 1..T fed to a session one by one: (T,).

    Each is the log-likelihood of the real frame's tokens plus seeded σ noise, given the real past. The imagined
    frames' figures are those of the model's own samples, which a model finds likelier than real data (all the
    more below temperature 1), so the two curves differ in level by construction; each is read over time. The KV
    cache keeps the cost linear in T, where `wm.score` over a long clip grows quadratically.
    """
    dims = wm.config.tokens_per_frame * wm.config.token_dim
    with wm.session(seed=seed) as s:
        s.reset(frames=real[:1])
        nats = [float(s.observe(frame, action)) for frame, action in zip(real[1:], actions, strict=True)]
    return -np.array(nats) / (dims * np.log(2.0))


def _write_video(path: Path, imagined: np.ndarray, real: np.ndarray) -> None:
    """imagined | real side by side, upscaled ×VIDEO_SCALE with nearest neighbour; frames (T, H, W, 3) uint8."""
    gap = np.full((imagined.shape[1], 1, 3), 255, np.uint8)
    first = np.concatenate([imagined[0], gap, real[0]], axis=1)
    h, w = first.shape[0] * VIDEO_SCALE, first.shape[1] * VIDEO_SCALE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), VIDEO_FPS, (w, h))
    if not writer.isOpened():
        raise WorldSimError(f"OpenCV could not open {path} for writing with the 'mp4v' codec; check that the "
                            "folder is writable and that opencv-python has video support.")
    try:
        for a, b in zip(imagined, real, strict=True):
            pair = np.concatenate([a, gap, b], axis=1)
            big = cv2.resize(pair, (w, h), interpolation=cv2.INTER_NEAREST)
            writer.write(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def _write_filmstrip(path: Path, imagined: np.ndarray, real: np.ndarray, bits: np.ndarray, real_bits: np.ndarray,
                     space: str, title: str) -> None:
    """Evenly spaced imagined frames above the real ones, per-frame bits/dim below; bits (T,) for frames 1..T."""
    from matplotlib.figure import Figure  # no pyplot: no global figure state, no GUI backend

    picks = sorted({int(round(t)) for t in np.linspace(0, len(imagined) - 1, min(FILMSTRIP_COLUMNS, len(imagined)))})
    fig = Figure(figsize=(1.3 * len(picks), 4.6), dpi=80, layout="constrained")
    grid = fig.add_gridspec(3, len(picks), height_ratios=[1, 1, 1.5])
    for col, t in enumerate(picks):
        for row, (frames, label) in enumerate(((imagined, "imagined"), (real, "real"))):
            ax = fig.add_subplot(grid[row, col])
            ax.imshow(frames[t], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t={t}", fontsize=8)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    ax = fig.add_subplot(grid[2, :])
    steps = np.arange(1, len(bits) + 1)
    ax.plot(steps, bits, marker=".", label="imagined: the model's own sampled tokens")
    ax.plot(steps, real_bits, marker=".", label="real: the real frame's tokens + σ noise, given the real past")
    # the default locator is an AutoLocator, a MaxNLocator, which takes `integer`; the stub types a plain Locator
    ax.xaxis.get_major_locator().set_params(integer=True)  # type: ignore[call-arg]
    ax.set_xlabel("frame", fontsize=8)
    ax.set_ylabel(f"{'latent' if space == 'latents' else 'pixel'} bits/dim\n(lower: likelier)", fontsize=8)
    # the two curves are not one quantity: a model always finds its own samples likelier than real data
    ax.set_title("Per-frame log-likelihood under the model. The curves differ in level by construction: a model "
                 "finds its own samples likelier than real frames (more so below temperature 1). Read each curve "
                 "over time: a spike is a surprising frame.", fontsize=7, loc="left", wrap=True)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path)


def _table(rows: list[dict[str, Any]], every: int) -> list[str]:
    """Every `every`-th row (and the last) as aligned text lines."""
    lines = [f"{'step':>4}  {'action':<10}  {'bits/dim':>8}  {'iters':>5}  {'ms':>7}"]
    for r in rows:
        if r["step"] % every == 0 or r["step"] == rows[-1]["step"] or r["step"] == 1:
            lines.append(f"{r['step']:>4}  {r['action']:<10}  {r['bits_per_dim']:>8.3f}  {r['iterations']:>5}  "
                         f"{r['ms']:>7.1f}")
    return lines


def run_demo(out_dir: str | os.PathLike, model: str | os.PathLike = DEFAULT_MODEL, steps: int = 48, seed: int = 0,
             progress: bool = True, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Imagine `steps` frames under the world's scripted actions, next to the real world's frames. The world is the
    one the model's meta.json `env_id` names in the registry (worldsim.worlds), else PushWorld.

    Args:
        out_dir: folder for rollout.mp4, filmstrip.png and summary.json (created if missing).
        model: bundled name (default: the trained `pushworld-64`), checkpoint directory, or preset name
            (presets are untrained, and the note says so).
        steps: number of imagined frames after the real first frame.
        seed: world layout and sampling seed.
        progress: show a tqdm bar (only when stderr is a terminal).
        echo: where the human-readable report goes line by line (the CLI passes `print`); None keeps it quiet.

    Returns:
        The summary (also written to summary.json): model, note, per-step rows, timings, files.
    """
    if steps < 1:
        raise WorldSimError(f"steps must be >= 1, got {steps}. Fix: pass steps=48 (or any positive count).")
    say = echo or (lambda line: None)
    t_start = time.perf_counter()
    wm, note = load_model(model, seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = wm.config
    if note:
        say(note)
    say(f"model: {wm!r}")
    world = demo_world(wm)
    actions = scripted_actions(steps, world)
    real = _world_frames(world, (cfg.height, cfg.width), actions, seed)

    rows: list[dict[str, Any]] = []
    bar = tqdm(total=steps, desc="demo", unit="frame", disable=not (progress and sys.stderr.isatty()))
    with wm.session(seed=seed) as s:
        s.reset(frames=real[:1])
        t_roll = time.perf_counter()
        for i, action in enumerate(actions, 1):
            t0 = time.perf_counter()
            res = s.step(action)
            rows.append({"step": i, "action": action, "bits_per_dim": float(res.bits_per_dim),
                         "log_prob": float(res.log_prob), "iterations": int(res.info["iterations"]),
                         "ms": 1000 * (time.perf_counter() - t0)})
            bar.update(1)
        rollout_s = time.perf_counter() - t_roll
        imagined = s.history
    bar.close()
    real_bits = _observed_bits(wm, real, actions, seed)

    bits = np.array([r["bits_per_dim"] for r in rows])
    space = cfg.likelihood_space
    trained = note is None
    title = f"{Path(model).name}{'' if trained else ' (untrained)'} — imagined vs real {world.name}, seed {seed}"
    files = {"video": out / "rollout.mp4", "filmstrip": out / "filmstrip.png", "summary": out / "summary.json"}
    _write_video(files["video"], imagined, real)
    _write_filmstrip(files["filmstrip"], imagined, real, bits, real_bits, space, title)

    fps = steps / rollout_s
    say("\n".join(_table(rows, every=max(1, steps // 6))))
    say(f"{steps} frames in {rollout_s:.2f} s: {fps:.1f} frames/s ({fps / cfg.fps:.2f}× real time at {cfg.fps} fps); "
        f"mean {space[:-1]} bits/dim imagined {bits.mean():.3f}, real frames observed {real_bits.mean():.3f}")
    summary: dict[str, Any] = {
        "model": str(model), "model_name": cfg.name, "trained": trained, "note": note, "world": world.name,
        "likelihood_space": space, "frame_size": [cfg.height, cfg.width], "seed": seed, "steps": steps,
        "rollout_seconds": rollout_s, "frames_per_second": fps, "total_seconds": time.perf_counter() - t_start,
        "mean_bits_per_dim": float(bits.mean()), "real_bits_per_dim": real_bits.tolist(),
        "rows": rows, "files": {k: str(v) for k, v in files.items()},
    }
    files["summary"].write_text(json.dumps(summary, indent=2))
    say(f"wrote {files['video']}, {files['filmstrip']}, {files['summary']}")
    return summary
