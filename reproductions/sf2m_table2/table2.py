r"""Reproduce Tong et al. 2023 ([SF]²M), Table 2: 2-D W2 and normalised path energy.

Tasks N→8gaussians, 8gaussians→moons, N→moons, N→scurve; methods I-CFM, OT-CFM,
SB-CFM and FM (Lipman's σ_min path; Gaussian source only), with the paper's
protocol (see `PROTOCOL` and README.md beside this file):

- data: torchcfm's generators (`flowlab.data`, checked against the originals in
  tests/data/test_torchcfm_generators.py) and its runner's S-curve (`PROTOCOL`'s
  `data`, recorded in every result); 10k training points per distribution,
  a Gaussian source drawn fresh each step (as torchcfm's runner does), 10k test
  points and 10k evaluation source points;
- model and optimiser: MLP 3×64 SELU with t appended, AdamW lr 1e-3, weight decay
  1e-5, constant learning rate, no EMA, batch 512, 19,532 steps (1000 epochs of
  10k / 512), t ~ U(0, 1);
- evaluation: 100 Euler steps from the 10k evaluation source points; W2 is the exact
  OT distance (`flowlab.metrics.wasserstein2`) between the 10k samples and the 10k
  test points; the path energy $E\int_0^1\|v(t, x_t)\|^2dt$ is integrated along the
  same Euler steps and $\mathrm{NPE} = |PE - W_2^2(q_0, q_1)| / W_2^2(q_0, q_1)$,
  with $W_2(q_0, q_1)$ the exact OT distance between the evaluation source points
  and the test points.

Every (task, method, seed) result is written as one JSON file the moment it
finishes, and results already on disk are skipped, so the 75-run table can be
completed over several sessions; `--table` rebuilds every table of README.md and
docs/reproduction.md from whatever results exist (a partial table says so).

    python -m reproductions.sf2m_table2.table2 [--tasks ...] [--methods ...]
        [--seeds 0 1 ...] [--steps N] [--n-eval N] [--out DIR] [--force]
    python -m reproductions.sf2m_table2.table2 --table
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import _common as common
from flowlab import data, losses, metrics, models
from flowlab.run import write_atomic
from flowlab.training import fit, make_optimizer

from .protocol import (
    DEFAULT_OUT,
    HERE,
    METHODS,
    PROTOCOL,
    PUBLISHED,
    ROOT,
    SKIP_NONFINITE,
    STEPS_PER_CALL,
    TASKS,
    cells,
    result_path,
    same_data,
)
from .protocol import sampler as _sampler
from .report import build_table, load_results, summarise, verdict, write_tables

__all__ = [  # the protocol and the report, re-exported for scripts and tests
    "DEFAULT_OUT",
    "HERE",
    "METHODS",
    "PROTOCOL",
    "PUBLISHED",
    "TASKS",
    "build_table",
    "cells",
    "load_results",
    "main",
    "result_path",
    "run_one",
    "same_data",
    "summarise",
    "training_setup",
    "verdict",
    "write_tables",
]

W2_BACKEND = "flowlab.metrics"  # records before the move to it say "pot"

# ---------------------------------------------------------------------------------
# One result
# ---------------------------------------------------------------------------------


def _keys(task: str, seed: int) -> dict[str, jax.Array]:
    """Data keys of one (task, seed), shared by every method (same data per seed)."""
    root = jax.random.fold_in(jax.random.key(seed), list(TASKS).index(task))
    names = ("train_target", "train_source", "test", "eval_source", "init", "train")
    return dict(zip(names, jax.random.split(root, len(names)), strict=True))


def _git_commit() -> dict[str, Any]:
    def git(*args):
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return out.stdout.strip() if out.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "flowlab")
    return {
        "commit": git("rev-parse", "HEAD"),
        "flowlab_dirty_files": dirty.splitlines() if dirty else [],
    }


def coupling_seconds_per_step(
    coupling, source, target, batch_size: int, key, reps: int = 50
) -> float:
    """Median seconds of one jitted coupling call on a training-sized batch.

    The batch is drawn once from the training samplers; the first call (compile)
    is not timed. Multiplied by the steps it estimates the coupling's share of the
    training time (inside the fused step it runs the same computation).
    """
    k0, k1, kc = jax.random.split(key, 3)
    x0 = jax.block_until_ready(source.sample(k0, batch_size))
    x1 = jax.block_until_ready(target.sample(k1, batch_size))
    fn = jax.jit(coupling)
    jax.block_until_ready(fn(kc, x0, x1))
    seconds = []
    for k in jax.random.split(kc, reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(k, x0, x1))
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


_MODULE = models.MLP(
    PROTOCOL["width"], PROTOCOL["depth"], PROTOCOL["activation"], "identity"
)
_MODEL_FN = models.apply_fn(_MODULE)


def _velocity(t, x, params):
    """The trained field `v(t, x, params)`, the same function in every run.

    So the evaluation's compiled ODE solve is reused from one result to the next.
    """
    return _MODEL_FN(params, t, x, None)


class Setup(NamedTuple):
    """What one (task, method, seed) trains on, before any step."""

    keys: dict[str, jax.Array]
    source: data.AbstractSampler  # the task's source distribution
    target: data.AbstractSampler  # the task's target distribution
    train_source: data.AbstractSampler  # fresh Gaussian draws, or 10k fixed points
    train_target: data.Empirical  # the 10k training points
    coupling: Any
    loss: losses.FlowMatchingLoss
    params: Any  # the initial MLP parameters


def training_setup(
    task: str, method: str, seed: int, n_train: int = PROTOCOL["n_train"]
) -> Setup:
    """The data, coupling, loss and initial parameters of one (task, method, seed)."""
    spec, m = TASKS[task], METHODS[method]
    keys = _keys(task, seed)
    source, target = _sampler(spec.source), _sampler(spec.target)
    train_target = data.Empirical(target.sample(keys["train_target"], n_train))
    # A Gaussian source is drawn fresh each step (torchcfm's runner: randn_like);
    # a data source has its own 10k training points.
    train_source = (
        source
        if spec.source == "gaussian"
        else data.Empirical(source.sample(keys["train_source"], n_train))
    )
    loss = losses.FlowMatchingLoss(
        m.path_fn(m.sigma), time_sampler=losses.uniform_time()
    )
    _, params = models.init_model(_MODULE, keys["init"], jnp.zeros(2))
    return Setup(
        keys,
        source,
        target,
        train_source,
        train_target,
        m.coupling_fn(m.sigma),
        loss,
        params,
    )


def run_one(
    task: str,
    method: str,
    seed: int,
    *,
    steps: int = PROTOCOL["steps"],
    n_eval: int = PROTOCOL["n_eval"],
    n_train: int = PROTOCOL["n_train"],
    out: Path | None = None,
    steps_per_call: int = STEPS_PER_CALL,
    coupling_reps: int = 50,
    reference_w2: float | None = None,
    git: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and evaluate one (task, method, seed); write its JSON to `out`.

    `reference_w2` is $W_2(q_0, q_1)$ on this (task, seed)'s evaluation points when
    already known (it depends on neither the method nor the training). `git` is
    the commit and uncommitted flowlab files of the code this process imported
    (taken when the run started: others may commit while it runs); default: now.
    """
    if (task, method) not in cells():
        raise ValueError(f"no cell ({task!r}, {method!r}); see cells().")
    spec, m = TASKS[task], METHODS[method]
    keys, source, target, train_source, train_target, coupling, loss, params = (
        training_setup(task, method, seed, n_train)
    )
    optimizer, lr_fn = make_optimizer(
        PROTOCOL["optimizer"],
        PROTOCOL["lr"],
        weight_decay=PROTOCOL["weight_decay"],
        schedule=PROTOCOL["lr_schedule"],
        total_steps=steps,
    )
    batch_size = PROTOCOL["batch_size"]
    t0 = time.perf_counter()
    result = fit(
        _MODEL_FN,
        params,
        loss,
        source=train_source,
        target=train_target,
        key=keys["train"],
        steps=steps,
        batch_size=batch_size,
        optimizer=optimizer,
        lr_fn=lr_fn,
        coupling=coupling,
        ema_decay=0.0,
        steps_per_call=min(steps_per_call, steps),
        on_nonfinite=SKIP_NONFINITE,
        log_every=max(1, min(1000, steps)),
        devices=1,
        progress=False,
    )
    params = jax.block_until_ready(result.state.params)
    train_seconds = time.perf_counter() - t0

    if method in ("icfm", "fm"):
        coupling_s = 0.0
    else:
        coupling_s = coupling_seconds_per_step(
            coupling,
            train_source,
            train_target,
            batch_size,
            jax.random.key(seed),
            coupling_reps,
        )

    t1 = time.perf_counter()
    x0 = source.sample(keys["eval_source"], n_eval)
    test = target.sample(keys["test"], n_eval)

    x1, energy = metrics.path_energy(
        _velocity, x0, params, solver=PROTOCOL["solver"], steps=PROTOCOL["solver_steps"]
    )
    x1 = jax.block_until_ready(x1)
    sample_seconds = time.perf_counter() - t1
    t2 = time.perf_counter()
    w2 = metrics.wasserstein2(x1, test)
    w2_seconds = time.perf_counter() - t2
    ref_seconds = 0.0
    if reference_w2 is None:
        t3 = time.perf_counter()
        reference_w2 = metrics.wasserstein2(x0, test)
        ref_seconds = time.perf_counter() - t3
    # The least energy of any flow between the flow's own endpoints: NPE against
    # it measures only how far the paths are from straight, optimal ones.
    w2_own = metrics.wasserstein2(x0, x1)
    eval_seconds = time.perf_counter() - t1
    energy = float(energy)
    history = result.history
    record = {
        "task": task,
        "task_label": spec.label,
        "method": method,
        "method_label": m.label,
        "method_note": m.note,
        "sigma": m.sigma,
        "seed": seed,
        "w2": w2,
        "npe": metrics.normalized_path_energy(energy, reference_w2),
        "path_energy": energy,
        "w2_source_target": reference_w2,
        "w2_source_samples": w2_own,
        "npe_own_endpoints": metrics.normalized_path_energy(energy, w2_own),
        "w2_backend": W2_BACKEND,
        "finite_samples": bool(np.all(np.isfinite(np.asarray(x1)))),
        "final_loss": history[-1]["loss"] if history else None,
        "loss_curve": [[r["step"], r["loss"]] for r in history],
        "skipped_steps": int(sum(r["skipped_steps"] for r in history)),
        "train_seconds": train_seconds,
        "steps_per_sec": steps / train_seconds,
        "coupling_seconds_per_step": coupling_s,
        "coupling_seconds": coupling_s * steps,
        "coupling_share": coupling_s * steps / train_seconds,
        "eval_seconds": eval_seconds,
        "sample_seconds": sample_seconds,
        "w2_seconds": w2_seconds,
        "w2_source_target_seconds": ref_seconds,
        "steps": steps,
        "steps_per_call": min(steps_per_call, steps),
        "batch_size": batch_size,
        "n_train": n_train,
        "n_eval": n_eval,
        "protocol": PROTOCOL,
        "git": git if git is not None else _git_commit(),
        "machine": common.machine_info(),
    }
    if out is not None:
        path_ = result_path(out, task, method, seed)
        path_.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path_, json.dumps(record, indent=1) + "\n")
    return record


# ---------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------


def _reference_w2(out: Path, task: str, seed: int, n_eval: int) -> float | None:
    """W2(q0, q1) of this (task, seed) from a result already on disk, if any."""
    for r in load_results(out):
        if (
            r["task"] == task
            and r["seed"] == seed
            and r["n_eval"] == n_eval
            and same_data(r, task)
        ):
            return r["w2_source_target"]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the missing results (or rebuild the tables with `--table`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=PROTOCOL["seeds"])
    parser.add_argument("--steps", type=int, default=PROTOCOL["steps"])
    parser.add_argument("--n-eval", type=int, default=PROTOCOL["n_eval"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--force", action="store_true", help="redo existing results")
    parser.add_argument(
        "--table", action="store_true", help="only rebuild the tables from the records"
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or args.n_eval < 2:
        parser.error("--steps must be >= 1 and --n-eval >= 2")
    if args.table:
        print(write_tables()["table2"])
        return 0
    todo = [
        (task, method, seed)
        for seed in args.seeds  # seed 0 of every cell before seed 1
        for task, method in cells(args.tasks, args.methods)
        if args.force or not result_path(args.out, task, method, seed).exists()
    ]
    git = _git_commit()  # the code this process has imported, before any result
    print(f"{len(todo)} results to run into {args.out}", flush=True)
    for i, (task, method, seed) in enumerate(todo, 1):
        r = run_one(
            task,
            method,
            seed,
            steps=args.steps,
            n_eval=args.n_eval,
            out=args.out,
            reference_w2=_reference_w2(args.out, task, seed, args.n_eval),
            git=git,
        )
        print(
            f"[{i}/{len(todo)}] {task} {method} seed {seed}: W2 {r['w2']:.4f} "
            f"NPE {r['npe']:.4f} loss {r['final_loss']:.4f} | train "
            f"{r['train_seconds']:.0f} s (coupling {100 * r['coupling_share']:.0f}%) "
            f"eval {r['eval_seconds']:.0f} s",
            flush=True,
        )
        if args.out == DEFAULT_OUT:  # a killed run still leaves its tables
            write_tables()
    return 0


if __name__ == "__main__":
    sys.exit(main())
