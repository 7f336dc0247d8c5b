"""Checkpoints as directories: config.json, model.safetensors, meta.json. Written atomically, never pickled."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import FORMAT_VERSION, ModelConfig, from_dict
from .errors import CheckpointError, ConfigError

FILES = ("config.json", "model.safetensors", "meta.json")


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
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format_version": str(FORMAT_VERSION)})
        (tmp / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))
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


def load_checkpoint(path: str | os.PathLike) -> tuple[ModelConfig, dict[str, torch.Tensor], dict[str, Any]]:
    """Read and check a checkpoint directory; every problem raises CheckpointError naming the file."""
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
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r}: model.safetensors is corrupt or truncated ({exc}). "
            "Fix: copy the file again or re-save the model."
        ) from None
    return config, {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, meta


def load_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict with a CheckpointError that names the missing, unexpected or mis-shaped tensors."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        parts = [f"missing {missing[:5]}" if missing else "", f"unexpected {unexpected[:5]}" if unexpected else "",
                 f"shape mismatch {shapes[:3]}" if shapes else ""]
        raise CheckpointError(
            f"checkpoint {where!r}: model.safetensors does not match config.json ({'; '.join(p for p in parts if p)}). "
            "Fix: keep config.json and model.safetensors from the same save."
        )
    module.load_state_dict(state)
