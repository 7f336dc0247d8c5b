"""`worldsim eval`: a world model's quality against the real env on held-out seeds, for any world (JSON report)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .argtypes import non_negative_int as _seed
from .argtypes import positive_int as _count
from .eval_generic import evaluate

__all__ = ["add_arguments", "evaluate", "format_table", "run", "settings_from_args"]

QUICK = {"episodes": 4, "long_horizon": 64, "probe_transitions": 512, "probe_steps": 150}  # --quick caps


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `worldsim eval`."""
    parser.add_argument("--model", default="pushworld-64",
                        help="bundled model name, checkpoint directory or preset (untrained)")
    parser.add_argument("--env", default=None, help="Gymnasium env id or world name to measure against (default: the "
                        "env in the model's meta.json, else worldsim/PushWorld-v0)")
    parser.add_argument("--episodes", type=_count, default=32, help="held-out episodes (world seeds)")
    parser.add_argument("--json", required=True, help="write the metrics to this JSON file")
    parser.add_argument("--png", default=None, help="side-by-side filmstrip (default: <json stem>.png next to it)")
    parser.add_argument("--seed", type=_seed, default=10_000,
                        help="first held-out world seed (keep it above the training seeds)")
    parser.add_argument("--horizon", type=_count, default=16, help="open-loop steps (metrics at k=1 and k=horizon)")
    parser.add_argument("--probe-transitions", type=_count, default=2048,
                        help="real transitions the inverse-dynamics probe (controllability) trains on")
    parser.add_argument("--probe-steps", type=_count, default=400, help="training steps of the probe")
    parser.add_argument("--no-extras", action="store_true", help="skip the world's own metrics (its eval extras)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "auto"), default="float32",
                        help="precision of the sessions' Jacobi passes and of scoring (see worldsim.precision; auto "
                             "measures this machine and says what it chose)")
    parser.add_argument("--long-horizon", type=_count, default=480,
                        help="PushWorld extras: frames per long rollout for object persistence (480 = 30 s at 16 fps)")
    parser.add_argument("--long-rollouts", type=_count, default=4,
                        help="PushWorld extras: long rollouts for object persistence (the slowest part)")
    parser.add_argument("--temperature", type=float,
                        help="sampling temperature of the rollouts (default: the checkpoint's, else 1)")
    parser.add_argument("--guidance", type=float,
                        help="classifier-free guidance weight of the rollouts (default: the checkpoint's, else 0)")
    parser.add_argument("--context", choices=("sample", "frame"),
                        help="what a generated frame leaves in the session's context (see Session; default: the "
                             "checkpoint's, else sample)")
    parser.add_argument("--best-of", type=_count, help="candidates per generated frame, the likeliest kept (see "
                        "Session; default: the checkpoint's, else 1; costs about that many times the compute)")
    parser.add_argument("--quick", action="store_true", help="a fast check: at most 4 episodes, 64 long frames, "
                        "512 probe transitions and 150 probe steps")


def settings_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """evaluate() keyword arguments from parsed flags; --quick caps the slow settings (see QUICK)."""
    values = {"episodes": args.episodes, "long_horizon": args.long_horizon,
              "probe_transitions": args.probe_transitions, "probe_steps": args.probe_steps}
    if args.quick:
        values = {k: min(v, QUICK[k]) for k, v in values.items()}
    return {"env": args.env, "seed": args.seed, "horizon": args.horizon, "long_rollouts": args.long_rollouts,
            "extras": not args.no_extras, **values,
            "session": {k: v for k, v in (("temperature", args.temperature), ("guidance", args.guidance),
                                          ("context", args.context), ("best_of", args.best_of))
                        if v is not None}}  # unset: the checkpoint's


def _fmt(value: Any, spec: str = ".3f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def format_table(r: dict) -> str:
    """A short human-readable summary of an evaluate() result: the generic metrics, then the world's targets."""
    h = r["horizon"]
    rows = [("env", f"{r['env_id']} ({r['policy']} policy)"),
            ("bits/dim", f"{r['bits_per_dim']:.3f} ({r['likelihood_space']})")]
    for k in sorted({1, h}):
        rows.append((f"PSNR k{k} (copy baseline)",
                     f"{r[f'psnr_k{k}']:.2f} dB ({r[f'copy_baseline_psnr_k{k}']:.2f})"))
        rows.append((f"SSIM k{k} (copy baseline)", f"{r[f'ssim_k{k}']:.3f} ({r[f'copy_baseline_ssim_k{k}']:.3f})"))
    rows.append(("controllability (probe imagined / real)",
                 f"{_fmt(r['controllability'])} ({_fmt(r['controllability_probe_imagined'])} / "
                 f"{_fmt(r['controllability_probe_real'])} {r['controllability_probe_metric']})"))
    if "extras_skipped" in r:
        rows.append(("world extras", f"skipped: {r['extras_skipped']}"))
    for name, t in r.get("targets", {}).items():
        rows.append((f"target {name} {t['op']} {t['threshold']:.3g}",
                     f"{_fmt(t['value'], '.3g')} {'pass' if t['pass'] else 'FAIL'}"))
    rows += [("generation", _fmt(r["frames_per_s"], ".1f", " frames/s")), ("wall time", f"{r['wall_time_s']:.1f} s")]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def run(args: argparse.Namespace) -> int:
    """`worldsim eval`: load the model, evaluate, write the JSON (and PNG), print a table."""
    from .dataset import atomic_write
    from .world_model import WorldModel

    json_path = Path(args.json)
    png = Path(args.png) if args.png else json_path.with_name(f"{json_path.stem}.png")
    model = WorldModel.load(args.model, dtype=args.dtype)
    result = evaluate(model, out_png=png, **settings_from_args(args))
    result["dtype"] = model.resolve_dtype()
    result["model"]["source"] = str(args.model)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(json_path, lambda f: f.write((json.dumps(result, indent=2) + "\n").encode()))
    print(format_table(result))
    print(f"wrote {json_path} and {png}")
    return 0
