"""Straightness of minibatch OT couplings on manifolds: NFE to a given quality.

Riemannian flow matching from the uniform distribution to a mixture on S², T² and
SO(3), trained once with independent pairs and once with exact-OT pairs (geodesic
squared-distance cost), then sampled with Euler at k = 1 … 64 steps and with dopri5.

    python -m reproductions.manifold_ot.run            # the full study (README)
    python -m reproductions.manifold_ot.run --quick    # seconds: the pipeline only
    python -m reproductions.manifold_ot.run --table    # tables from results.json

Writes `results.json` (every raw number, seeds, wall times, versions) and
`table.md` to `--out` (default `results/`, `results/quick/` with `--quick`); the
full run with the default `--out` also rewrites the README's results block.
"""

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import load_average, machine_info, replace_blocks
from flowlab.run import write_atomic

from . import study
from .protocol import METHODS, QUICK, README, RESULTS, TASKS, settings
from .report import build_tables


def _versions() -> dict[str, Any]:
    out = {}
    for name in ("ott", "ot", "scipy", "equinox"):
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            out[name] = None
    out["pot"] = out.pop("ot")
    return out


def run(
    out: Path,
    *,
    quick: bool = False,
    tasks: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    log=print,
) -> dict[str, Any]:
    """The whole study; `results.json` is rewritten after every trained model."""
    p = settings(quick)
    tasks = list(tasks or (QUICK["tasks"] if quick else TASKS))
    start = time.perf_counter()
    results: dict[str, Any] = {
        "study": "manifold_ot",
        "command": " ".join(["python -m reproductions.manifold_ot.run", *sys.argv[1:]]),
        "quick": quick,
        "complete": False,
        "settings": p,
        "tasks": tasks,
        "seeds": {},
        "machine": machine_info() | _versions(),
        "references": {},
        "pairs": {},
        "cells": [],
    }
    out.mkdir(parents=True, exist_ok=True)

    def save():
        results["wall_seconds"] = time.perf_counter() - start
        results["machine"]["load_average_end"] = load_average()
        write_atomic(out / "results.json", json.dumps(results, indent=1) + "\n")

    for task in tasks:
        task_seeds = list(seeds or (QUICK["seeds"] if quick else TASKS[task].seeds))
        results["seeds"][task] = task_seeds
        t0 = time.perf_counter()
        ev = study.eval_set(task, p)
        results["references"][task] = study.reference_metrics(task, ev, p)
        results["pairs"][task] = study.pair_statistics(task, p)
        results["references"][task]["seconds"] = time.perf_counter() - t0
        log(f"{task}: references and pairs in {time.perf_counter() - t0:.0f} s")
        for seed in task_seeds:
            for method in METHODS:
                cell = study.run_cell(task, method, seed, ev, p)
                results["cells"].append(cell)
                save()
                log(
                    f"{task} {method} seed {seed}: train {cell['train_seconds']:.0f} s,"
                    f" eval {cell['sample_eval_seconds'] + cell['nll_seconds']:.0f} s,"
                    f" NLL {cell['nll']:.3f}"
                )
    results["complete"] = True
    save()
    return results


def write_tables(results: dict[str, Any], out: Path, readme: bool) -> str:
    """`table.md` in `out`, and the README's block when `readme`."""
    text = build_tables(results)
    write_atomic(out / "table.md", text + "\n")
    if readme:
        write_atomic(README, replace_blocks(README.read_text(), {"results": text}))
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reproductions.manifold_ot.run",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds)")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int)
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
        results = run(out, quick=args.quick, tasks=args.tasks, seeds=args.seeds)
        readme = readme and not args.quick and not args.tasks and not args.seeds
    print(write_tables(results, out, readme))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
