"""The trainer's resumable state (raw weights, EMA weights, optimiser moments) as a safetensors checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .checkpoint import load_checkpoint, load_weights, save_checkpoint
from .model.flow import FlowNet


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
    """Load OUT/state into `net`; returns (model state, EMA state, optimiser state dict, meta)."""
    _, tensors, meta = load_checkpoint(path, prefix="model.")
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
