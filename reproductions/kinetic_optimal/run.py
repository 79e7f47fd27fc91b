"""Kinetic-optimal Gaussian schedules: their kinetic energy, and flows trained on them.

For N(0, I) to moons, 8gaussians and the 8x8 digits: the kinetic energy of
Cond-OT, cosine, VP, linear VP and the schedule fitted by
`flowlab.schedules.kinetic_optimal` (by the formula in the estimated data
separation and by Monte Carlo); then flows trained on moons and 8gaussians with
each training schedule and three seeds, sampled with Euler at k = 1 … 128 steps
and with dopri5 (exact W2 to held-out points), and on digits (test bpd).

    python -m reproductions.kinetic_optimal.run            # the full study (README)
    python -m reproductions.kinetic_optimal.run --quick    # ~1-2 min: the pipeline
    python -m reproductions.kinetic_optimal.run --table    # tables from results.json

Writes `results.json` (every raw number, seeds, wall times, versions),
`table.md` and `nfe_moons.png` to `--out` (default `results/`, `results/quick/`
with `--quick`); the training runs go to `<out>/runs/` (git-ignored). The full
run with the default `--out` also rewrites the README's results block and
copies the figure to `docs/assets/kinetic_optimal_nfe.png`.
"""

import argparse
import importlib
import json
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import load_average, machine_info, replace_blocks
from flowlab import metrics
from flowlab.run import write_atomic

from . import study
from .protocol import (
    DIGITS,
    ENERGY_TASKS,
    FIGURE,
    QUICK,
    README,
    RESULTS,
    SCHEDULES,
    TRAIN_TASKS,
    settings,
)
from .report import build_tables


def _versions() -> dict[str, Any]:
    out = {}
    for name in ("ot", "scipy", "equinox", "diffrax", "optax", "flax", "sklearn"):
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            out[name] = None
    out["pot"] = out.pop("ot")
    out["scikit-learn"] = out.pop("sklearn")
    return out


def run(
    out: Path,
    *,
    quick: bool = False,
    seeds: Sequence[int] | None = None,
    digits: bool = True,
    log=print,
) -> dict[str, Any]:
    """The whole study; `results.json` is rewritten after every trained model."""
    p = settings(quick)
    energy_tasks = list(QUICK["energy_tasks"] if quick else ENERGY_TASKS)
    train_tasks = list(QUICK["train_tasks"] if quick else TRAIN_TASKS)
    names = list(QUICK["schedules"]) if quick else None
    start = time.perf_counter()
    results: dict[str, Any] = {
        "study": "kinetic_optimal",
        "command": " ".join(
            ["python -m reproductions.kinetic_optimal.run", *sys.argv[1:]]
        ),
        "quick": quick,
        "complete": False,
        "settings": p,
        "energy_tasks": energy_tasks,
        "train_tasks": train_tasks,
        "schedules": [],
        "seeds": {},
        "machine": machine_info() | _versions(),
        "energies": {},
        "references": {},
        "cells": [],
        "digits": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    runs = out / "runs"
    if runs.exists():  # train_run wants new run directories
        shutil.rmtree(runs)

    def save():
        results["wall_seconds"] = time.perf_counter() - start
        results["machine"]["load_average_end"] = load_average()
        write_atomic(out / "results.json", json.dumps(results, indent=1) + "\n")

    for task in energy_tasks:
        t0 = time.perf_counter()
        results["energies"][task] = study.energies(task, p, list(SCHEDULES))
        save()
        log(f"{task}: energies in {time.perf_counter() - t0:.0f} s")
    for task in train_tasks:
        config, schedules, task_seeds = TRAIN_TASKS[task]
        schedules = names or schedules
        results["schedules"] = list(dict.fromkeys([*results["schedules"], *schedules]))
        task_seeds = list(seeds or (QUICK["seeds"] if quick else task_seeds))
        results["seeds"][task] = task_seeds
        ev = study.eval_set(task, p)
        ref = study.reference_metrics(ev)
        results["references"][task] = ref
        for seed in task_seeds:
            for schedule in schedules:
                cell = study.run_cell(task, schedule, seed, ev, ref, p, runs)
                results["cells"].append(cell)
                save()
                log(
                    f"{task} {schedule} seed {seed}: train_run "
                    f"{cell['train_run_seconds']:.0f} s, eval "
                    f"{cell['eval_seconds']:.0f} s, "
                    f"W2 dopri5 {cell['curve'][-1]['w2']:.4f}"
                )
    if digits:
        config, schedules, digit_seeds = DIGITS
        digit_seeds = list(QUICK["seeds"] if quick else digit_seeds)
        results["seeds"]["digits"] = digit_seeds
        for seed in digit_seeds:
            for schedule in schedules:
                cell = study.digits_cell(schedule, seed, p, runs)
                results["digits"].append(cell)
                save()
                log(
                    f"digits {schedule} seed {seed}: train_run "
                    f"{cell['train_run_seconds']:.0f} s, test bpd "
                    f"{cell['summary']['test_bpd']:.4f}"
                )
    results["complete"] = True
    save()
    return results


def plot(results: dict[str, Any], path: Path, task: str = "moons") -> bool:
    """NFE-vs-W2 of each schedule on `task` (mean over seeds), Cond-OT's dopri5
    and W2's floor (two target samples) dashed."""
    s = results["settings"]
    curves, baselines = {}, {}
    for schedule in results["schedules"]:
        cells = [c for c in results["cells"]
                 if (c["task"], c["schedule"]) == (task, schedule)]  # fmt: skip
        if not cells:
            continue
        euler = [[r for r in c["curve"] if r["solver"] == "euler"] for c in cells]
        label = SCHEDULES[schedule][0]
        curves[f"{label}, Euler"] = metrics.NFECurve(
            np.array([r["steps"] for r in euler[0]]),
            np.array([r["nfe"] for r in euler[0]]),
            np.mean([[r["w2"] for r in e] for e in euler], axis=0),
        )
        if schedule == "cond_ot":  # the others' lie on it (the table has them)
            baselines[f"{label}, dopri5"] = statistics.mean(
                c["curve"][-1]["w2"] for c in cells
            )
    if not curves:
        return False
    if task in results["references"]:
        baselines["target vs target"] = results["references"][task]["w2_target_target"]
    seeds = len(results["seeds"].get(task, []))
    metrics.plot_nfe_curve(
        curves,
        path,
        baselines=baselines,
        ylabel="$W_2$ to held-out points",
        title=f"N(0, I) → {task}: {s['steps']:,} training steps, mean of {seeds} seeds",
    )
    return True


def write_outputs(results: dict[str, Any], out: Path, readme: bool) -> str:
    """`table.md` and the figure in `out`; the README's block and docs figure when
    `readme`."""
    text = build_tables(results)
    write_atomic(out / "table.md", text + "\n")
    figure = out / "nfe_moons.png"
    if plot(results, figure) and readme:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(figure, FIGURE)
    if readme:
        write_atomic(README, replace_blocks(README.read_text(), {"results": text}))
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reproductions.kinetic_optimal.run",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run (~1-2 min)")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--seeds", nargs="+", type=int, help="2-D training seeds")
    parser.add_argument("--no-digits", action="store_true", help="skip digits training")
    parser.add_argument(
        "--table", action="store_true", help="only rebuild the tables from results.json"
    )
    args = parser.parse_args(argv)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    # The README shows the full protocol's default run, nothing else.
    readme = out.resolve() == RESULTS.resolve()
    if args.table:
        results = json.loads((out / "results.json").read_text())
    else:
        results = run(
            out, quick=args.quick, seeds=args.seeds, digits=not args.no_digits
        )
        readme = readme and not args.quick and not args.seeds and not args.no_digits
    print(write_outputs(results, out, readme))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
