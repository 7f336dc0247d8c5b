"""Copy a trained checkpoint into the package as a bundled model (half precision, eval figures in meta.json).

Usage: python scripts/bundle_model.py runs/pw64/model --name pushworld-64 --eval eval.json
Also stores the plausibility calibration (`worldsim.plausibility.pushworld_calibration`: real held-out PushWorld
clips scored by the half-precision weights as shipped). Refuses a model over the size limit. Commit the result
only when its eval beats the bundled one.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from worldsim import WorldModel
from worldsim.plausibility import META_KEY, pushworld_calibration
from worldsim.world_model import PRETRAINED_DIR, SAMPLING_KEY

LIMIT_MB = 25.0


def bundle(src: str, name: str, eval_json: str | None, dest_root: Path = PRETRAINED_DIR,
           calibrate: bool = True, temperature: float | None = None, lineage: str | None = None,
           sampling: dict | None = None) -> Path:
    wm = WorldModel.from_pretrained(src)
    # The session defaults users get: temperature from `worldsim eval --temperature`, the rest (e.g.
    # {"tol": 5e-4, "freeze_prefix": true}) from `worldsim bench`.
    recommended = {**({} if temperature is None else {"temperature": temperature}), **(sampling or {})}
    if recommended:
        wm.meta[SAMPLING_KEY] = {**wm.sampling_defaults, **recommended}
    if calibrate:  # on the weights as they ship (fp16 round trip), so the reference matches what users score
        wm.net.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                                for k, v in wm.net.state_dict().items()})
        wm.meta[META_KEY] = pushworld_calibration(wm).to_meta()
    if eval_json:
        wm.meta["eval"] = json.loads(Path(eval_json).read_text())
    if lineage:  # how the weights came to be when it took several legs (a list of {what, command, ...})
        wm.meta["training_legs"] = json.loads(Path(lineage).read_text())
    wm.meta["bundled_from"] = str(src)
    wm.meta["hardware"] = {"machine": platform.machine(), "processor": platform.processor() or "unknown",
                           "torch": torch.__version__, "threads": torch.get_num_threads()}
    out = wm.save(dest_root / name, half=True)
    size = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    if size > LIMIT_MB:
        raise SystemExit(f"{out} is {size:.1f} MB, over the {LIMIT_MB} MB limit for bundled models")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("src", help="checkpoint directory (e.g. runs/pw64/model)")
    p.add_argument("--name", default="pushworld-64", help="bundled model name")
    p.add_argument("--eval", help="JSON written by `worldsim eval` for this checkpoint")
    p.add_argument("--no-calibrate", action="store_true", help="skip the plausibility calibration")
    p.add_argument("--temperature", type=float, help="default sampling temperature stored in meta.json")
    p.add_argument("--lineage", help="JSON list of the training legs that led to these weights")
    p.add_argument("--sampling", type=json.loads, help='more session defaults as JSON, e.g. \'{"tol": 1e-3}\'')
    a = p.parse_args()
    out = bundle(a.src, a.name, a.eval, calibrate=not a.no_calibrate, temperature=a.temperature,
                 lineage=a.lineage, sampling=a.sampling)
    print(f"bundled {a.src} as {out}")


if __name__ == "__main__":
    main()
