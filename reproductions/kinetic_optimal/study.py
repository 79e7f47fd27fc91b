"""Kinetic energies of Gaussian schedules, and flows trained on them, scored.

`energies(task, p)` measures, for N(0, I) to the task's target points, the data
separation $\\hat\\rho$ (timed), the fitted kinetic-optimal schedule, and the
kinetic energy of every schedule of `SCHEDULES` by the formula in $\\hat\\rho$
(`metrics.kinetic_energy`) and by Monte Carlo on the exact marginal velocity of
the empirical measure (`metrics.kinetic_energy_mc`), up to `t_max` and, where it
is finite, up to 1.

`run_cell(task, schedule, seed, ev, p, runs)` trains one model with
`flowlab.run.train_run` on the task's named config (`path.schedule` set) and
scores its EMA parameters on fixed evaluation points: the exact W2 of Euler
samples at each k of `euler_steps` and of dopri5 samples, with their NFE, and the
mean distance of each Euler endpoint to dopri5's from the same start.
`digits_cell` trains on the digits config and keeps its summary (test bpd).
"""

import time
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import flowlab as fl
from flowlab import data, metrics, schedules
from flowlab.config import load_config, to_dict
from flowlab.run import load_run, train_run

from .._metrics import exact_w2
from .protocol import DIGITS, ENERGY_TASKS, FINITE_AT_1, SCHEDULES, TRAIN_TASKS


def _sync(tree):
    return jax.block_until_ready(tree)


w2 = exact_w2
"""Exact W2 (`reproductions._metrics.exact_w2`)."""


def _energy(e) -> dict[str, float]:
    return {"energy": float(e.energy), "se": float(e.se)}


def energies(task: str, p: dict[str, Any], names) -> dict[str, Any]:
    """The separation, the fitted schedule and every schedule's kinetic energy."""
    x1 = ENERGY_TASKS[task].points(p["energy_points"], p["data_seed"])
    key = jax.random.key(p["separation_seed"])
    kw = {"key": key, "grid": p["grid"], "n_queries": p["n_queries"]}
    start = time.perf_counter()
    sep = _sync(metrics.data_separation(x1, **kw))
    cold = time.perf_counter() - start  # tracing and compilation included
    start = time.perf_counter()
    sep = _sync(metrics.data_separation(x1, **kw))
    warm = time.perf_counter() - start
    start = time.perf_counter()
    ko = _sync(schedules.kinetic_optimal(x1, regularization=p["regularization"], **kw))
    fit_seconds = time.perf_counter() - start
    out: dict[str, Any] = {
        "n_points": int(x1.shape[0]),
        "event_size": int(sep.event_size),
        "mean_sq_norm": float(sep.mean_sq_norm),
        "separation_seconds_cold": cold,
        "separation_seconds": warm,
        "fit_seconds": fit_seconds,
        "total_angle": float(ko.total_angle),
        "separation": {
            "snr": np.asarray(sep.snr).tolist(),
            "rho": np.asarray(sep.rho).tolist(),
            "rho_se": np.asarray(sep.rho_se).tolist(),
        },
        "schedules": {},
    }
    mc_key = jax.random.key(p["mc_seed"])  # the same draws for every schedule
    for name in names:
        factory = SCHEDULES[name][1]
        s = ko if factory is None else factory()
        row: dict[str, Any] = {}
        for label, t_max in (("t_max", p["t_max"]), ("t1", 1.0)):
            if label == "t1" and name not in FINITE_AT_1:
                continue
            start = time.perf_counter()
            f = metrics.kinetic_energy(s, sep, nodes=p["quadrature_nodes"], t_max=t_max)
            mc = metrics.kinetic_energy_mc(mc_key, s, x1, n=p["mc_n"], t_max=t_max)
            row[label] = {
                "formula": _energy(f),
                "mc": _energy(mc),
                "seconds": time.perf_counter() - start,
            }
        out["schedules"][name] = row
    return out


class EvalSet(NamedTuple):
    """The evaluation points of a task: the same for every seed and schedule."""

    x0: jax.Array  # standard normal starting points, (n_samples, d)
    test: jax.Array  # held-out target points, (n_samples, d)
    test2: jax.Array  # a second held-out set: W2's finite-sample floor


def eval_set(task: str, p: dict[str, Any]) -> EvalSet:
    """The task's evaluation points, from `eval_seed` (independent of the seeds)."""
    target = data.get(load_config(TRAIN_TASKS[task][0]).data.target)
    k = jax.random.split(jax.random.key(p["eval_seed"]), 3)
    n = p["n_samples"]
    x0 = jax.random.normal(k[0], (n, *target.event_shape))
    return EvalSet(x0, target.sample(k[1], n), target.sample(k[2], n))


def reference_metrics(ev: EvalSet) -> dict[str, float]:
    """W2 between the two target samples (the floor) and source vs target."""
    return {
        "w2_target_target": w2(ev.test2, ev.test),
        "w2_source_target": w2(ev.x0, ev.test),
        "rms_target": float(jnp.sqrt(jnp.mean(jnp.sum(ev.test**2, axis=1)))),
    }


def _overrides(schedule: str, seed: int, steps: int, p: dict[str, Any]) -> list[str]:
    return [
        f"path.schedule={schedule}",
        f"seed={seed}",
        f"steps={steps}",
        f"checkpoint_every={steps}",
        f"log_every={min(p['log_every'], steps)}",
    ]


def _v(t, x, args):
    """The learned field, `args = (model_fn, params)`: one function for every model,
    so repeated solves reuse their compilation."""
    model_fn, params = args
    return model_fn(params, t, x, None)


_MODEL_FNS: dict[str, Any] = {}


def _losses(run: Path) -> list[list[float]]:
    import json

    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [[int(r["step"]), float(r["loss"])] for r in rows if "loss" in r]


def train(
    config_name: str, schedule: str, seed: int, steps: int, p, run: Path, extra=()
):
    """`train_run` of the named config; its summary, loss curve and seconds."""
    config = load_config(config_name, [*_overrides(schedule, seed, steps, p), *extra])
    start = time.perf_counter()
    summary = train_run(config, run, progress=False)
    seconds = time.perf_counter() - start
    return summary | {"config": to_dict(config)}, _losses(run), seconds


def evaluate(task: str, run: Path, ev: EvalSet, ref: dict[str, float], p) -> dict:
    """The curves of one run's EMA parameters: Euler at each k and dopri5."""
    exp, state = load_run(run)
    # Equal modules give equal apply functions; keep the first of the task anyway,
    # so that every model's solves reuse one compilation.
    model_fn = _MODEL_FNS.setdefault(task, exp.model_fn)
    args = (model_fn, state.ema_params)
    start = time.perf_counter()
    tol = p["rtol"]
    out = _sync(fl.sample_ode(_v, ev.x0, args, solver=p["reference_solver"],
                              rtol=tol, atol=tol))  # fmt: skip
    dopri = {"solver": p["reference_solver"], "steps": None, "nfe": int(out.nfe),
             "w2": w2(out.x, ev.test), "endpoint_error": 0.0}  # fmt: skip
    ks = p["euler_steps"]
    quality = metrics.nfe_curve(_v, ev.x0, ev.test, args, solver="euler", steps=ks,
                                metric=w2)  # fmt: skip

    def endpoint(x, y):  # mean distance to dopri5's endpoint from the same x0
        return float(jnp.mean(jnp.linalg.norm(x - y, axis=1))) / ref["rms_target"]

    straight = metrics.nfe_curve(_v, ev.x0, out.x, args, solver="euler", steps=ks,
                                 metric=endpoint)  # fmt: skip
    rows = [
        {
            "solver": "euler",
            "steps": int(k),
            "nfe": int(n),
            "w2": float(a),
            "endpoint_error": float(b),
        }  # fmt: skip
        for k, n, a, b in zip(
            quality.steps, quality.nfe, quality.value, straight.value, strict=True
        )  # fmt: skip
    ]
    return {"curve": [*rows, dopri], "eval_seconds": time.perf_counter() - start}


def run_cell(task: str, schedule: str, seed: int, ev: EvalSet, ref, p, runs: Path):
    """Train and evaluate one (task, schedule, seed): its record."""
    run = runs / f"{task}_{schedule}_{seed}"
    summary, curve, seconds = train(TRAIN_TASKS[task][0], schedule, seed, p["steps"],
                                    p, run)  # fmt: skip
    return {
        **_record(task, schedule, seed, run, summary, curve, seconds),
        **evaluate(task, run, ev, ref, p),
    }


def _record(task, schedule, seed, run: Path, summary, curve, seconds) -> dict[str, Any]:
    """The fields every cell records about its training run."""
    return {
        "task": task,
        "schedule": schedule,
        "seed": seed,
        "run_dir": str(run),
        "train_run_seconds": seconds,
        "final_loss": curve[-1][1] if curve else None,
        "loss_curve": curve,
        "summary": summary,
    }


def digits_cell(schedule: str, seed: int, p, runs: Path) -> dict[str, Any]:
    """Train on the digits config (steps `digits_steps`); its summary (test bpd)."""
    run = runs / f"digits_{schedule}_{seed}"
    summary, curve, seconds = train(DIGITS[0], schedule, seed, p["digits_steps"], p,
                                    run, p["digits_overrides"])  # fmt: skip
    return _record("digits", schedule, seed, run, summary, curve, seconds)


def nfe_to_quality(curve, key: str, bound: float) -> int | None:
    """The fewest Euler steps k from which on every larger k has `key` <= `bound`.

    `None` (a miss) when even the largest k is above it.
    """
    best = None
    for row in reversed([r for r in curve if r["solver"] == "euler"]):
        if row[key] > bound:
            break
        best = row["steps"]
    return best
