"""The trainer's resumable state: the safetensors checkpoint (raw weights, EMA weights, optimiser moments), the
metrics log kept in step with it, and stopping on SIGINT/SIGTERM at a step boundary so that a stop loses nothing."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import config_changes, find_checkpoint, load_checkpoint, load_weights, save_checkpoint
from .dataset import atomic_write
from .errors import CheckpointError
from .model.flow import FlowNet


class NothingToResume(CheckpointError, FileNotFoundError):
    """A resume asked for in an output directory that holds no saved training state."""


class TrainingStopped(KeyboardInterrupt):
    """Training stopped early on SIGINT or SIGTERM, after saving its state (`worldsim train` exits 128 + signum)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """Inside `with`, SIGINT and SIGTERM set `signum` instead of interrupting, so the trainer can stop at the next
    step boundary and save a consistent state; a second signal interrupts at once (KeyboardInterrupt).

    Handlers can only be set in the main thread: elsewhere this does nothing. A signal that was ignored (SIG_IGN,
    as for background jobs) stays ignored; the previous handlers come back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "no signal"


def find_state(out: Path) -> Path | None:
    """OUT/state (or the copy a save was replacing when its process died), or None when OUT holds no state."""
    return find_checkpoint(out / "state")


def save_state(path: Path, net: FlowNet, ema: dict[str, torch.Tensor], opt: torch.optim.Optimizer,
               meta: dict[str, Any]) -> None:
    """Atomically write OUT/state: tensors model.*, ema.*, opt.<param index>.<moment>; groups in meta.json."""
    sd = opt.state_dict()
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.items()})
    for idx, moments in sd["state"].items():
        for key, value in moments.items():
            tensors[f"opt.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    save_checkpoint(path, net.cfg, tensors, {**meta, "optimizer_groups": groups})


def load_state(path: Path, net: FlowNet) -> tuple[dict, dict, dict, dict[str, Any]]:
    """Load OUT/state into `net`; returns (model state, EMA state, optimiser state dict, meta).

    The state must have been trained with `net`'s config (the name aside), else CheckpointError lists the fields.
    """
    saved, tensors, meta = load_checkpoint(path, prefix="model.")
    changes = config_changes(saved.model_dump(mode="json"), net.cfg.model_dump(mode="json"))
    if changes:
        raise CheckpointError(
            f"resume: {str(path)!r} holds a run trained with another config ({', '.join(changes[:6])}; saved → "
            "now). Fix: resume with the --preset and --config (and dataset) the run started with, or train into "
            "a new --out."
        )
    model = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    load_weights(net, model, str(path))
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    state: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    opt = {"state": state, "param_groups": meta.pop("optimizer_groups")}
    return model, ema, opt, meta


def trim_metrics(path: Path, step: int | None) -> int:
    """Make metrics.jsonl hold only the rows of a run that continues after `step`: those of steps up to it and
    those without a step (the codec phase's); `step` None (a fresh start) keeps none. Torn lines (a write the
    process died in) go too. Rewritten atomically (a temporary file renamed over it); returns the rows dropped."""
    if not path.is_file():
        return 0
    lines = path.read_text().splitlines()
    keep = [line for line, row in _rows(lines) if step is not None and not row.get("step", 0) > step]
    if len(keep) < len(lines):
        atomic_write(path, lambda f: f.write("".join(f"{line}\n" for line in keep).encode()))
    return len(lines) - len(keep)


def _rows(lines: list[str]) -> list[tuple[str, dict]]:
    """(line, row) for each line of metrics.jsonl that parses: a torn last line (the process died writing it) not."""
    out = []
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            out.append((line, row))
    return out


def read_metrics(path: Path) -> list[dict]:
    """The rows of metrics.jsonl, torn lines skipped."""
    return [row for _, row in _rows(path.read_text().splitlines())]


def plot_metrics(jsonl: Path, png: Path) -> None:
    """Training bits/dim (and the denoiser loss) against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_metrics(jsonl) if "bpd" in r]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["bpd"] for r in rows], lw=0.5, alpha=0.4, label="train bits/dim")
    k = max(1, len(rows) // 100)
    smooth = np.convolve([r["bpd"] for r in rows], np.ones(k) / k, mode="valid")
    ax.plot(steps[k - 1 :], smooth, lw=1.5, label=f"mean of {k}")
    ax.set_xlabel("step")
    ax.set_ylabel("bits/dim")
    ax.legend()
    fig.tight_layout()
    tmp = png.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, png)
