"""Checkpoints as directories: config.json, model.safetensors, meta.json. Written atomically, never pickled."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import FORMAT_VERSION, ModelConfig, from_dict
from .errors import CheckpointError, ConfigError
from .model.flow import FlowNet

FILES = ("config.json", "model.safetensors", "meta.json")
# Config fields that fix how frames map to tokens. The weights have the same shapes at any frame size, so only
# the config saved inside model.safetensors (metadata "config") can tell that config.json's were edited.
GEOMETRY = ("height", "width", "codec")


def save_checkpoint(path: str | os.PathLike, config: ModelConfig, state: dict[str, torch.Tensor],
                    meta: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write the checkpoint directory atomically (a temporary sibling, then rename over `path`).

    half: store floating tensors as float16 (they load back as float32).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
                   for k, v in state.items()}
        dump = config.model_dump(mode="json")
        save_file(tensors, str(tmp / "model.safetensors"),
                  metadata={"format_version": str(FORMAT_VERSION), "config": json.dumps(dump)})
        (tmp / "config.json").write_text(json.dumps(dump, indent=2))
        (tmp / "meta.json").write_text(json.dumps(meta or {}, indent=2, default=str))
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def find_checkpoint(path: str | os.PathLike) -> Path | None:
    """`path` when it is a directory; else the copy a save was replacing when its process died between the two
    renames (see save_checkpoint); else None."""
    path = Path(path)
    old = path.with_name(f".{path.name}.old")
    return path if path.is_dir() else old if old.is_dir() else None


def load_checkpoint(path: str | os.PathLike, prefix: str = "",
                    ) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read and check a checkpoint directory; every problem raises CheckpointError naming the file.

    The model tensors (those under `prefix`: "model." in the trainer's state) must have the names and shapes of
    the model config.json builds, and config.json the frame geometry the weights were saved with.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a directory; expected a folder with {', '.join(FILES)} "
            "(as written by WorldModel.save). Fix: check the path, or pass a bundled model name."
        )
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is incomplete: missing {', '.join(missing)}; expected {', '.join(FILES)}. "
            "Fix: save it again with WorldModel.save(path)."
        )
    try:
        raw = json.loads((path / "config.json").read_text())
        meta = json.loads((path / "meta.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: config.json or meta.json is not valid JSON ({exc})."
        ) from None
    version = raw.get("format_version") if isinstance(raw, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version!r}; this worldsim reads version {FORMAT_VERSION}. "
            "Fix: use the worldsim release that wrote it, or re-train/convert the checkpoint."
        )
    try:
        config = from_dict(raw)
    except ConfigError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: config.json does not validate: {exc}") from None
    try:
        state = load_file(str(path / "model.safetensors"))
        with safe_open(str(path / "model.safetensors"), "pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: model.safetensors is corrupt or truncated ({exc}). "
            "Fix: copy the file again or re-save the model."
        ) from None
    try:  # the config saved with the weights, its defaults filled in as config.json's are
        saved = from_dict(json.loads(header["config"])).model_dump(mode="json")
    except (KeyError, TypeError, json.JSONDecodeError, ConfigError):
        saved = None  # written before the config was stored with the weights: the geometry cannot be checked
    check_against_config(config, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)},
                         saved, str(path))
    return config, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, meta


def _edits(saved: dict, now: dict, keys: Iterable[str], at: str = "") -> list[str]:
    """'key old → new' for each (nested) field of `keys` that differs between two config dumps."""
    out = []
    for key in keys:
        old, new = saved.get(key), now.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            out += _edits(old, new, sorted(set(old) | set(new)), f"{at}{key}.")
        elif old != new:
            out.append(f"{at}{key} {json.dumps(old)} → {json.dumps(new)}")
    return out


def config_changes(old: dict, new: dict) -> list[str]:
    """'field old → new' for every field (nested ones dotted) in which two config dumps differ, the name aside."""
    return _edits(old, new, sorted((set(old) | set(new)) - {"name"}))


def check_against_config(config: ModelConfig, state: dict[str, torch.Tensor], saved: dict | None,
                         where: str) -> None:
    """Raise CheckpointError unless the tensors fit the model `config` builds (names, then shapes) and, when the
    config the weights were saved with is known (`saved`, a config dump), its frame geometry equals `config`'s."""
    now = config.model_dump(mode="json")
    edits = config_changes(saved, now) if saved is not None else []
    cause = (f"config.json was edited after saving: {', '.join(edits[:6])}" if edits else
             "config.json was edited after saving (a width, layer count, codec patch…) or comes from another save")
    with torch.random.fork_rng(devices=[]):  # building the model must not move the caller's random stream
        own = {k: tuple(v.shape) for k, v in FlowNet(config).state_dict().items()}
    missing = [k for k in own if k not in state]
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != own[k]]
    if missing or unexpected or wrong:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else ""]
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch at {k!r}: {tuple(state[k].shape)} in the file, {own[k]} implied by "
                         f"config.json" + (f"; {len(wrong) - 1} more tensors differ" if len(wrong) > 1 else ""))
        raise CheckpointError(
            f"checkpoint {where!r}: model.safetensors does not match config.json "
            f"({'; '.join(p for p in parts if p)}). Likely cause: {cause}. "
            "Fix: use config.json from the same save as model.safetensors, or train a model with the new config."
        )
    geometry = _edits(saved, now, GEOMETRY) if saved is not None else []
    if saved is not None and geometry:
        h, w = saved.get("height"), saved.get("width")
        raise CheckpointError(
            f"checkpoint {where!r}: config.json asks for {config.height}×{config.width} frames ({', '.join(geometry)}) "
            f"but model.safetensors was saved for {h}×{w} frames; its tensors have the same shapes at any frame size, "
            "so it would load and sample garbage. Likely cause: height/width (or codec) edited in config.json. "
            f"Fix: restore {', '.join(GEOMETRY)} in config.json to the saved values, or train a model at the new "
            "size (record a dataset at that size, then worldsim train)."
        )


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict with a CheckpointError that names the missing, unexpected or mis-shaped tensors."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
                 f"shape mismatch {shapes[:3]}" if shapes else ""]
        raise CheckpointError(
            f"checkpoint {where!r}: model.safetensors does not match config.json ({'; '.join(p for p in parts if p)}). "
            "Fix: keep config.json and model.safetensors from the same save."
        )
    module.load_state_dict(state)
