"""Pool `examples/plan_push.py --json` reports and show how much each planner's success count varies between runs.

    python scripts/planner_spread.py runs/*.json [--ratio model/real [--target 0.8]] [--out spread.png] [--json F]

A run is one (controller, search seed) pair. Reports of the same run are merged task by task, so a run split over
seed ranges, or stopped early (plan_push writes its report after every task), pools into one. Counts are taken
over the tasks that every run finished, so runs of different lengths compare fairly. For each controller it
prints every run's count, their mean and standard deviation, and how many tasks were solved in every run and in
at least one; `--ratio A/B` divides A's mean count by B's.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

# report fields that differ between runs meant to be pooled; any other difference is worth a warning
PER_RUN = {"seed", "episodes", "json", "search_seed", "controllers", "complete", "tasks", "success_rate",
           "success_interval_95", "block_progress_px"}


def load_runs(paths: list[Path]) -> dict[tuple[str, int], dict[int, bool]]:
    """{(controller, search seed): {task seed: success}} over every report given."""
    runs: dict[tuple[str, int], dict[int, bool]] = defaultdict(dict)
    first: dict = {}
    for path in paths:
        try:
            report = json.loads(path.read_text())
            search_seed = int(report.get("search_seed", 0))
            outcomes = {(c, int(t["seed"])): bool(t["success"]) for c, ts in report["tasks"].items() for t in ts}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            sys.exit(f"{path}: not a plan_push.py --json report ({e!r}); write one with "
                     "`python examples/plan_push.py ... --json FILE`")
        settings = {k: v for k, v in report.items() if k not in PER_RUN}
        differ = sorted(k for k in settings.keys() & first.keys() if settings[k] != first[k])
        if differ:
            print(f"warning: {path} differs from the first report in {', '.join(differ)}; pooled anyway",
                  file=sys.stderr)
        first = first or settings
        for (controller, task), success in outcomes.items():
            runs[controller, search_seed][task] = success
    if not runs:
        sys.exit("the reports hold no finished task yet")
    return dict(runs)


def summarise(runs: dict[tuple[str, int], dict[int, bool]]) -> dict:
    """Per controller, the counts of each run over the tasks all runs finished, and what they share."""
    common = sorted(set.intersection(*(set(outcomes) for outcomes in runs.values())))
    if not common:
        sys.exit("the reports share no task that every run finished: give runs over the same task seeds")
    summary: dict = {"tasks": common, "controllers": {}}
    for controller in sorted({c for c, _ in runs}):
        seeds = sorted(s for c, s in runs if c == controller)
        wins = np.array([[runs[controller, s][t] for t in common] for s in seeds])  # (runs, tasks)
        counts = wins.sum(axis=1)
        summary["controllers"][controller] = {
            "runs": {int(s): int(n) for s, n in zip(seeds, counts, strict=True)},
            "mean": float(counts.mean()),
            "std": float(counts.std(ddof=1)) if len(counts) > 1 else None,
            "solved_in_every_run": int(wins.all(axis=0).sum()),
            "solved_in_some_run": int(wins.any(axis=0).sum()),
        }
    return summary


def runs_label(c: dict) -> str:
    """"1 run", "20 runs": how many runs a controller's summary pools."""
    return f"{len(c['runs'])} run{'s' if len(c['runs']) > 1 else ''}"


def plot(summary: dict, path: Path, title: str, target: tuple[str, float] | None = None) -> None:
    """One row of dots per controller (a dot per run's count), its mean as a bar; `target` (label, count) as a
    dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    controllers = summary["controllers"]
    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.7 * len(controllers)))
    for row, c in enumerate(controllers.values()):
        counts = np.array(list(c["runs"].values()), dtype=float)
        jitter = np.linspace(-0.15, 0.15, len(counts)) if len(counts) > 1 else np.zeros(1)
        ax.scatter(counts, row + jitter, s=24, alpha=0.7)
        ax.plot([c["mean"]] * 2, [row - 0.3, row + 0.3], color="black", lw=2)
    if target:
        ax.axvline(target[1], color="grey", ls="--", lw=1)
        ax.text(target[1], len(controllers) - 0.45, f" {target[0]}", color="grey", fontsize=8, va="top")
    ax.set_yticks(range(len(controllers)), [f"{n} ({runs_label(c)})" for n, c in controllers.items()])
    ax.set_xlabel(f"successes of {len(summary['tasks'])} tasks (bar: mean of the runs)")
    highest = max(max(c["runs"].values()) for c in controllers.values())
    ax.set_xlim(-0.5, min(len(summary["tasks"]), max(highest, target[1] if target else 0) * 1.25 + 2))
    ax.set_ylim(-0.6, len(controllers) - 0.4)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("reports", nargs="+", type=Path, help="plan_push.py --json files")
    p.add_argument("--ratio", help="A/B: divide controller A's mean count by B's (e.g. model/real)")
    p.add_argument("--target", type=float, help="with --ratio A/B: draw the count A needs for this ratio (e.g. 0.8)")
    p.add_argument("--out", type=Path, help="write a picture of the runs' counts here (PNG)")
    p.add_argument("--json", type=Path, help="write the summary here")
    args = p.parse_args(argv)

    summary = summarise(load_runs(args.reports))
    controllers = summary["controllers"]
    print(f"tasks finished by every run: {len(summary['tasks'])}")
    for name, c in controllers.items():
        spread = f" ± {c['std']:.1f}" if c["std"] is not None else ""
        print(f"{name:>6}: {c['mean']:.1f}{spread} successes over {runs_label(c)} "
              f"({', '.join(str(n) for n in c['runs'].values())}); solved in every run {c['solved_in_every_run']}, "
              f"in some run {c['solved_in_some_run']}")
    title, target = "success counts, run by run", None
    if args.target is not None and not args.ratio:
        sys.exit("--target needs --ratio A/B: it is a share of B's mean count")
    if args.ratio:
        a, _, b = args.ratio.partition("/")
        if a not in controllers or b not in controllers:
            sys.exit(f"--ratio {args.ratio}: expected A/B with A and B among {sorted(controllers)}")
        summary["ratio"] = {"of": args.ratio, "value": controllers[a]["mean"] / max(controllers[b]["mean"], 1e-9)}
        print(f"ratio {args.ratio} of the mean counts: {summary['ratio']['value']:.2f}")
        title += f"; {args.ratio} = {summary['ratio']['value']:.2f}"
        if args.target is not None:
            target = (f"{args.target:g} × {b}", args.target * controllers[b]["mean"])
    if args.out:
        plot(summary, args.out, title, target)
        print(f"wrote {args.out}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
