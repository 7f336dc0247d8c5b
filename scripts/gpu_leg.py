"""One timed training leg on a GPU machine: record PushWorld in parallel shards, fine-tune candidates side by side
from a model, export each as fp16 (small enough to copy back).

    python scripts/gpu_leg.py --init pushworld-64 --out OUT --budget-minutes 9.0 \\
        --run "G=--frames 64 --batch 64 --ema 0.99" --run "H=--frames 32 --batch 128 --ema 0.99"

(the bundled model's leg 8, whose run H shipped; legs 10-11 added `--policy pushworld-contacts`; the full recipe
is in docs/model-card.md). On a machine without the project's dependencies, install them and the project
from carried wheels into a folder on PYTHONPATH and run this script from outside the checkout, so that the
training subprocesses import the installed package (docs/training.md, "A machine without the dependencies").

Data: `--shards` × `--per-shard` episodes; shard k is `worldsim record ... --seed 1000 + per_shard·k`, so world
seeds 1000 … 1000 + shards·per_shard − 1 are covered once (the policy's generator differs per shard). Each run is
`worldsim train --init-from INIT --budget-minutes …` (warm start, cosine sized to the time left); a run that
dies in its first two minutes (e.g. out of memory) is restarted at half its batch. A run's own `--init-from`
overrides `--init` (to continue a candidate of an earlier leg on the same machine; its data is then reused).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from multiprocessing import Pool
from pathlib import Path

T0 = time.time()
p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--init", required=True, help="model name or checkpoint directory to start from")
p.add_argument("--out", required=True, help="where the fp16 models and thinned metrics go")
p.add_argument("--budget-minutes", type=float, required=True, help="wall clock for the whole leg")
p.add_argument("--run", action="append", required=True, help='NAME="extra worldsim train arguments"')
p.add_argument("--shards", type=int, default=16)
p.add_argument("--per-shard", type=int, default=500)
p.add_argument("--after-end", type=int, default=0, help="steps recorded after each episode ends (record --after-end)")
p.add_argument("--policy", default="pushworld", help="data policy (record --policy), e.g. pushworld-walls")
p.add_argument("--device", default="cuda")
p.add_argument("--work", default="/tmp/leg", help="scratch folder (data, full checkpoints, logs)")
args = p.parse_args()
out, root = Path(args.out), Path(args.work)
data = root / "data"
runs = {k: v.split() for k, v in (r.split("=", 1) for r in args.run)}
TRAIN = ("import sys, argparse, logging; from worldsim.train import add_arguments, run; "
         "logging.basicConfig(level=logging.INFO); p = argparse.ArgumentParser(); add_arguments(p); "
         "sys.exit(run(p.parse_args()))")


def record_shard(k: int) -> list[dict]:
    os.environ["OMP_NUM_THREADS"] = "1"
    from worldsim.record import record_dataset

    d = record_dataset("worldsim/PushWorld-v0", args.per_shard, data / f"s{k}", policy=args.policy,
                       seed=1000 + args.per_shard * k, progress=False, overwrite=True,
                       after_end=args.after_end)
    return [{**e, "file": f"s{k}/{e['file']}"} for e in json.loads((d / "dataset.json").read_text())["episodes"]]


def record() -> None:
    """Shards in parallel, then one manifest over all of them (episode files may sit in sub-folders)."""
    with Pool(min(args.shards, os.cpu_count() or 1)) as pool:
        parts = pool.map(record_shard, range(args.shards))
    manifest = json.loads((data / "s0" / "dataset.json").read_text())
    manifest["episodes"] = [e for part in parts for e in part]
    manifest["episode_count"] = len(manifest["episodes"])
    manifest["frame_count"] = sum(e["frames"] for e in manifest["episodes"])
    manifest["source"] = {**manifest["source"], "seed": 1000, "shards": args.shards, "per_shard": args.per_shard,
                          "after_end": args.after_end, "policy": args.policy}
    (data / "dataset.json").write_text(json.dumps(manifest))
    print(f"data: {manifest['episode_count']} episodes, {manifest['frame_count']} frames "
          f"in {time.time() - T0:.0f}s", flush=True)


def command(name: str) -> list[str]:
    left = args.budget_minutes * 60 - (time.time() - T0)
    return [sys.executable, "-c", TRAIN, "--data", str(data), "--out", str(root / name), "--preset", "small",
            "--lr", "5e-4", "--warmup", "200", "--bf16", "--device", args.device, "--init-from", args.init,
            "--budget-minutes", f"{left / 60 - 0.75:.2f}", "--checkpoint-every", "90", "--threads", "4",
            *runs[name]]


def train_all() -> None:
    procs = {}
    for name in runs:
        log = open(root / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(command(name), stdout=log, stderr=subprocess.STDOUT), log)
    started = time.time()
    for name, (proc, log) in list(procs.items()):
        while proc.poll() is None and time.time() - started < 120:
            time.sleep(2)
        if proc.poll() not in (None, 0) and "--batch" in runs[name]:
            i = runs[name].index("--batch") + 1
            runs[name][i] = str(int(runs[name][i]) // 2)
            print(f"{name} failed early:\n{(root / f'{name}.log').read_text()[-1500:]}\nretry at batch {runs[name][i]}")
            procs[name] = (subprocess.Popen(command(name), stdout=log, stderr=subprocess.STDOUT), log)
    for name, (proc, log) in procs.items():
        try:
            proc.wait(timeout=max(1.0, args.budget_minutes * 60 - (time.time() - T0) + 20))
        except subprocess.TimeoutExpired:
            proc.send_signal(2)  # KeyboardInterrupt: the trainer checkpoints in its finally block
            proc.wait(timeout=60)
        log.close()
        tail = "".join((root / f"{name}.log").read_text().splitlines(True)[-6:])
        print(f"--- {name} rc={proc.returncode}\n{tail}", flush=True)


def export() -> None:
    from worldsim import WorldModel

    for name in runs:
        try:
            model = WorldModel.from_pretrained(root / name / "model")
            model.save(out / name, half=True)
            rows = (root / name / "metrics.jsonl").read_text().splitlines()
            (out / name / "metrics.jsonl").write_text("\n".join(rows[::5] + rows[-1:]) + "\n")
            print(name, "step", model.meta.get("step"), "held-out bpd", model.meta.get("held_out_bpd"), flush=True)
        except Exception as e:  # keep going: the other candidates may be fine
            print(f"{name}: could not export: {e!r}", flush=True)


if __name__ == "__main__":
    if (data / "dataset.json").exists():  # a later leg with the same --work folder reuses the data
        print("data: reusing", data, flush=True)
    else:
        record()
    train_all()
    export()
    print(f"leg done in {time.time() - T0:.0f}s", flush=True)
